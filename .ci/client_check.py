"""A client generated from /openapi.json calls every operation of a running server.

Usage: client_check.py BASE_URL ADMIN_KEY CLIENT_DIR
CLIENT_DIR holds the package `openapi-python-client generate` made (its --output-path). Each
operation is called once through the generated `sync_detailed`, with the generated models,
creating things before they are read; every answer must be a documented status (the client
raises on any other) below 500, and a documented body must parse into the generated models.
"""

import importlib
import inspect
import io
import pkgutil
import sys
import types
import typing

base, key, client_dir = sys.argv[1:4]
sys.path.insert(0, client_dir)
api_pkg = importlib.import_module("client.api")  # the generated package, named by --output-path
from client.client import AuthenticatedClient  # noqa: E402
from client.types import UNSET, File  # noqa: E402

# Bodies by operation, as an integrator would send them.
BODIES = {
    "put_leads": {"email": "client@generated.example", "first_name": "Mei"},
    "post_leads_bulk": [{"email": "bulk@generated.example"}],
    "patch_leads_by_id": {"company": "Acme"},
    "post_leads_by_id_tags": {"add": ["vip"]},
    "post_leads_by_id_score": {"delta": 5, "reason": "called back"},
    "post_leads_by_id_notes": {"text": "left a message", "call": {"outcome": "voicemail", "follow_up_on": "2026-12-10"}},
    "post_events": {"lead": {"email": "client@generated.example"}, "type": "page_viewed"},
    "post_campaigns_by_id_enroll": {"leads": ["1"]},
    "post_campaigns_by_id_exit": {"leads": ["1"], "reason": "client check"},
    "post_handoffs": {"lead": {"email": "client@generated.example"}, "queue": "sdr", "reason": "asked for pricing"},
    "post_handoffs_by_id_reject": {"reason": "no budget"},
    "post_handoffs_by_id_convert": {},
    "put_queues_by_queue_members_by_member": {"available": True},
    "post_webhooks": {"url": "https://crm.example/hooks/nurture", "events": ["lead.handed_off"]},
    "post_admin_clock_advance": {"by": "1h"},
    "post_admin_keys": {"name": "client-check", "role": "crm"},
    "post_templates_by_name_preview": {"language": "en"},
    "post_templates_by_name_test_send": {"to": "marketer@generated.example"},
    "post_t_events": {"visitor": "v_clientcheck0000001", "events": [{"type": "page_view", "url": "https://www.lumen-cloud.example/pricing"}]},
}
PLAYBOOK = b"kind: Segment\nid: client-check\nwhen: { field: { name: email, exists: true } }\n"

# Creating operations first, removing ones last; the rest in between.
FIRST = ["put_leads", "post_leads_bulk", "post_events", "post_handoffs", "post_webhooks", "post_queues_by_queue_claim"]
LAST = ["delete_webhooks_by_id", "delete_leads_by_id"]


def path_value(module: str, name: str) -> str:
    if name == "id":
        if "campaigns" in module:
            return "welcome"
        return "icp" if "segments" in module else "1"
    return {"queue": "sdr", "member": "admin-bot", "token": "not-a-token", "name": "welcome-cxo"}[name]


def body_for(module: str, annotation) -> object:
    if "File" in str(annotation):
        return File(payload=io.BytesIO(PLAYBOOK), file_name="segment.yaml", mime_type="application/yaml")
    sample = BODIES[module]
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = typing.get_args(annotation) if union else (annotation,)
    last_error = None
    for option in options:
        if typing.get_origin(option) is list:
            if isinstance(sample, list):
                (item,) = typing.get_args(option)
                return [item.from_dict(x) for x in sample]
            continue
        if isinstance(sample, dict) and hasattr(option, "from_dict"):
            try:
                return option.from_dict(sample)
            except Exception as error:  # the next union member may fit
                last_error = error
    raise SystemExit(f"{module}: no generated model takes {sample!r} ({last_error})")


modules = [
    f"client.api.{group.name}.{op.name}"
    for group in pkgutil.iter_modules(api_pkg.__path__)
    for op in pkgutil.iter_modules([f"{api_pkg.__path__[0]}/{group.name}"])
]
rank = {name: i for i, name in enumerate(FIRST)}
modules.sort(key=lambda m: (m.rsplit(".", 1)[1] in LAST, rank.get(m.rsplit(".", 1)[1], len(FIRST)), m))

client = AuthenticatedClient(base_url=base, token=key, raise_on_unexpected_status=True)
failures = []
for name in modules:
    module = importlib.import_module(name)
    op = name.rsplit(".", 1)[1]
    signature = inspect.signature(module.sync_detailed)
    kwargs = {"client": client}
    for param in signature.parameters.values():
        if param.name == "client" or param.default is not inspect.Parameter.empty:
            continue
        if param.name == "body":
            kwargs["body"] = body_for(op, param.annotation)
        else:
            kwargs[param.name] = path_value(op, param.name)
    try:
        response = module.sync_detailed(**kwargs)
    except Exception as error:  # an undocumented status, or an answer the models cannot read
        failures.append(f"{op}: {type(error).__name__}: {error}")
        continue
    status = int(response.status_code)
    if status >= 500:
        failures.append(f"{op}: {status}")
    print(f"{op}: {status}")

print(f"{len(modules)} operations called through the generated client, {len(failures)} failed")
if failures:
    print("\n".join(failures))
    sys.exit(1)
