//! Every word the console shows, in Chinese and in English, and the words made of data
//! (roles, statuses, countdowns, why a claim found nothing).

use super::*;

/// Every word a console page shows, in one language.
pub struct Text {
    pub lang: &'static str,
    pub other_lang: &'static str,
    pub other_lang_name: &'static str,
    pub sign_in: &'static str,
    pub email: &'static str,
    pub password: &'static str,
    pub wrong: &'static str,
    pub too_many: &'static str,
    pub expired_form: &'static str,
    pub password_set: &'static str,
    pub signed_out: &'static str,
    pub set_password: &'static str,
    pub new_password: &'static str,
    pub confirm_password: &'static str,
    pub password_rule: &'static str,
    pub mismatch: &'static str,
    pub home: &'static str,
    pub sign_out: &'static str,
    pub sign_out_everywhere: &'static str,
    pub my_queues: &'static str,
    pub queues: &'static str,
    pub queue_empty: &'static str,
    pub lead: &'static str,
    pub reason: &'static str,
    pub status: &'static str,
    pub sla: &'static str,
    pub yours: &'static str,
    pub campaigns: &'static str,
    pub campaign: &'static str,
    pub version: &'static str,
    pub due_in: &'static str,
    pub overdue: &'static str,
    pub hours: &'static str,
    pub minutes: &'static str,
    pub claim_next: &'static str,
    pub claimed: &'static str,
    pub nothing_to_claim: &'static str,
    pub accept: &'static str,
    pub convert: &'static str,
    pub release: &'static str,
    pub reject: &'static str,
    pub reject_reason: &'static str,
    pub recycle: &'static str,
    pub decided: &'static str,
    pub changed_meanwhile: &'static str,
    pub not_yours: &'static str,
    pub say_why: &'static str,
    pub actions: &'static str,
    pub my_handoffs: &'static str,
    pub queue: &'static str,
    pub users: &'static str,
    pub invite: &'static str,
    pub role: &'static str,
    pub password_state: &'static str,
    pub set: &'static str,
    pub not_yet: &'static str,
    pub deactivated: &'static str,
    pub deactivate: &'static str,
    pub new_link: &'static str,
    pub link_once: &'static str,
    pub admins_only: &'static str,
    pub already_user: &'static str,
    pub bad_email: &'static str,
    pub no_lead: &'static str,
    pub why: &'static str,
    pub score: &'static str,
    pub no_points: &'static str,
    pub source: &'static str,
    pub points: &'static str,
    pub times: &'static str,
    pub tags: &'static str,
    pub timeline: &'static str,
    pub when: &'static str,
    pub what: &'static str,
    pub detail: &'static str,
    pub stage: &'static str,
    pub owner: &'static str,
    pub rule: &'static str,
    pub by_hand: &'static str,
    pub added: &'static str,
    pub removed: &'static str,
    pub kind_event: &'static str,
    pub kind_tag: &'static str,
    pub kind_score: &'static str,
    pub kind_handoff: &'static str,
    pub kind_step: &'static str,
    pub kind_message: &'static str,
    pub kind_note: &'static str,
    pub kind_call: &'static str,
    pub outcome_reached: &'static str,
    pub outcome_voicemail: &'static str,
    pub outcome_wrong_number: &'static str,
    pub outcome_not_interested: &'static str,
    pub outcome_meeting_booked: &'static str,
    pub no_call: &'static str,
    pub follow_up_on: &'static str,
    pub follow_up: &'static str,
    pub note: &'static str,
    pub add_note: &'static str,
    pub save_note: &'static str,
    pub note_saved: &'static str,
    pub empty_note: &'static str,
    pub call_outcome: &'static str,
    pub amount: &'static str,
    pub amount_bad: &'static str,
    pub contact: &'static str,
    pub save_contact: &'static str,
    pub contact_saved: &'static str,
    pub contact_bad: &'static str,
    pub survey: &'static str,
    pub handoffs: &'static str,
    pub no_handoffs: &'static str,
    pub counted: &'static str,
    pub decided_by: &'static str,
    pub outcome: &'static str,
    pub current_handoff: &'static str,
    pub created: &'static str,
    pub shortcuts: &'static str,
    pub key_claim: &'static str,
    pub key_move: &'static str,
    pub key_accept: &'static str,
    pub key_note: &'static str,
    pub key_home: &'static str,
    pub key_help: &'static str,
    pub updated: &'static str,
    pub close: &'static str,
    pub no_handoff: &'static str,
    pub link_expired: &'static str,
    pub queue_board: &'static str,
    pub open_now: &'static str,
    pub assigned_now: &'static str,
    pub claimed_now: &'static str,
    pub overdue_now: &'static str,
    pub breaches_7d: &'static str,
    pub breaches_chart: &'static str,
    pub members: &'static str,
    pub no_members: &'static str,
    pub member: &'static str,
    pub available: &'static str,
    pub capacity: &'static str,
    pub no_limit: &'static str,
    pub weight: &'static str,
    pub load: &'static str,
    pub save: &'static str,
    pub member_saved: &'static str,
    pub member_bad: &'static str,
    pub routing: &'static str,
    pub routing_round_robin: &'static str,
    pub routing_claim: &'static str,
    pub on_breach: &'static str,
    pub moves_to: &'static str,
    pub no_sla: &'static str,
    pub sections: &'static str,
    pub no_member: &'static str,
    pub running_now: &'static str,
    pub waiting_now: &'static str,
    pub sent: &'static str,
    pub opened: &'static str,
    pub clicked: &'static str,
    pub handed_off: &'static str,
    pub exited: &'static str,
    pub campaign_type: &'static str,
    pub steps: &'static str,
    pub step: &'static str,
    pub does: &'static str,
    pub entered: &'static str,
    pub at_step_now: &'static str,
    pub versions: &'static str,
    pub deployed: &'static str,
    pub file: &'static str,
    pub pause: &'static str,
    pub resume: &'static str,
    pub paused_notice: &'static str,
    pub resumed_notice: &'static str,
    pub enroll_segment: &'static str,
    pub segment: &'static str,
    pub dry_run_first: &'static str,
    pub dry_run_title: &'static str,
    pub would_enter: &'static str,
    pub of_those_unreachable: &'static str,
    pub would_skip: &'static str,
    pub enroll_them: &'static str,
    pub enrolled_notice: &'static str,
    pub skipped_word: &'static str,
    pub why_already_in: &'static str,
    pub why_reentry: &'static str,
    pub why_no_email: &'static str,
    pub why_unsubscribed: &'static str,
    pub why_suppressed: &'static str,
    pub no_segments: &'static str,
    pub nobody_at_step: &'static str,
    pub wakes_at: &'static str,
    pub here_since: &'static str,
    pub company: &'static str,
    pub graph: &'static str,
    pub graph_hint: &'static str,
    pub no_campaign: &'static str,
    pub marketers_only: &'static str,
    pub retired: &'static str,
    pub next_page: &'static str,
    pub back_to_campaign: &'static str,
    pub no_campaigns: &'static str,
    pub enroll_bad: &'static str,
    pub leads: &'static str,
    pub search: &'static str,
    pub starts_with: &'static str,
    pub tag: &'static str,
    pub any_stage: &'static str,
    pub score_from: &'static str,
    pub score_to: &'static str,
    pub name: &'static str,
    pub no_leads_found: &'static str,
    pub first_matches: &'static str,
    pub search_bad: &'static str,
    pub erase: &'static str,
    pub erase_title: &'static str,
    pub erase_what: &'static str,
    pub erase_confirm: &'static str,
    pub erase_mismatch: &'static str,
    pub erased: &'static str,
    pub cancel: &'static str,
    pub score_whole: &'static str,
    pub admins_erase: &'static str,
}

pub const ZH: Text = Text {
    lang: "zh",
    other_lang: "en",
    other_lang_name: "English",
    sign_in: "登录",
    email: "邮箱",
    password: "密码",
    wrong: "邮箱或密码不正确。",
    too_many: "尝试次数过多，请一分钟后再试。",
    expired_form: "页面已过期，请重新提交。",
    password_set: "密码已设置，请登录。",
    signed_out: "您已退出登录。",
    set_password: "设置密码",
    new_password: "新密码",
    confirm_password: "再次输入新密码",
    password_rule: "至少 10 个字符；几个词连在一起就是好密码。",
    mismatch: "两次输入的密码不一致。",
    home: "首页",
    sign_out: "退出",
    sign_out_everywhere: "在所有设备上退出",
    my_queues: "我的队列",
    queues: "队列",
    queue_empty: "队列中没有待处理的线索。",
    lead: "线索",
    reason: "原因",
    status: "状态",
    sla: "SLA",
    yours: "归您",
    campaigns: "营销活动",
    campaign: "活动",
    version: "版本",
    due_in: "剩余",
    overdue: "已超时",
    hours: "小时",
    minutes: "分钟",
    claim_next: "领取下一条",
    claimed: "已领取一条线索。",
    nothing_to_claim: "队列中没有可领取的线索。",
    accept: "接受",
    convert: "成交",
    release: "放回队列",
    reject: "退回",
    reject_reason: "退回原因",
    recycle: "冷却后回到培育",
    decided: "已记录。",
    changed_meanwhile: "这条线索刚被其他人处理过，请刷新后再试。",
    not_yours: "这条线索不归您处理。",
    say_why: "退回时请写明原因。",
    actions: "操作",
    my_handoffs: "我领取的线索",
    queue: "队列",
    users: "用户",
    invite: "邀请",
    role: "角色",
    password_state: "密码",
    set: "已设置",
    not_yet: "未设置",
    deactivated: "已停用",
    deactivate: "停用",
    new_link: "新链接",
    link_once: "请把这个链接发给对方；它只显示这一次，72 小时内有效：",
    admins_only: "只有管理员可以管理用户。",
    already_user: "这个邮箱已经是用户了；可以为其生成新链接。",
    bad_email: "请填写有效的邮箱地址。",
    no_lead: "没有这条线索。",
    why: "为什么是这条线索",
    score: "评分",
    no_points: "还没有得分记录。",
    source: "来源",
    points: "分数",
    times: "次数",
    tags: "标签",
    timeline: "时间线",
    when: "时间",
    what: "类型",
    detail: "内容",
    stage: "阶段",
    owner: "负责人",
    rule: "规则",
    by_hand: "手动",
    added: "添加",
    removed: "移除",
    kind_event: "行为",
    kind_tag: "标签",
    kind_score: "评分",
    kind_handoff: "转交",
    kind_step: "营销步骤",
    kind_message: "消息",
    kind_note: "备注",
    kind_call: "电话",
    outcome_reached: "已接通",
    outcome_voicemail: "已留言",
    outcome_wrong_number: "号码错误",
    outcome_not_interested: "无意向",
    outcome_meeting_booked: "已约会议",
    no_call: "不是通话，只写备注",
    follow_up_on: "下次跟进日期",
    follow_up: "跟进",
    note: "备注",
    add_note: "备注与通话",
    save_note: "保存",
    note_saved: "已记录。",
    empty_note: "请写下备注，或选择通话结果。",
    call_outcome: "通话结果",
    amount: "成交金额",
    amount_bad: "金额请填写不小于 0 的数字，最多两位小数。",
    contact: "联系方式",
    save_contact: "保存联系方式",
    contact_saved: "联系方式已保存。",
    contact_bad: "联系方式未保存：",
    survey: "问卷回答",
    handoffs: "历次转交",
    no_handoffs: "尚未转交过。",
    counted: "计分的行为",
    decided_by: "处理人",
    outcome: "结果",
    current_handoff: "当前转交",
    created: "创建时间",
    shortcuts: "键盘快捷键",
    key_claim: "领取下一条线索",
    key_move: "在线索之间移动（回车打开）",
    key_accept: "接受当前转交",
    key_note: "写备注或记录通话",
    key_home: "回到首页",
    key_help: "显示或隐藏本帮助",
    updated: "队列有更新。",
    close: "关闭",
    no_handoff: "没有这条转交。",
    link_expired: "这个链接已用过或已过期，请向管理员要一个新链接。",
    queue_board: "队列看板",
    open_now: "待领取",
    assigned_now: "其中已分配",
    claimed_now: "处理中",
    overdue_now: "已超 SLA",
    breaches_7d: "近 7 天 SLA 超时",
    breaches_chart: "近 7 天每天的 SLA 超时次数",
    members: "成员",
    no_members: "这个队列没有成员；只能手动领取。成员在 playbook 的 queues.yaml 里列出。",
    member: "成员",
    available: "在岗",
    capacity: "上限",
    no_limit: "不限",
    weight: "权重",
    load: "手上",
    save: "保存",
    member_saved: "成员设置已保存。",
    member_bad: "未保存：上限请填不小于 0 的整数（留空为不限），权重请填 1 到 100 的整数。",
    routing: "分配方式",
    routing_round_robin: "轮流分配",
    routing_claim: "自行领取",
    on_breach: "超时后",
    moves_to: "转到",
    no_sla: "无 SLA",
    sections: "栏目",
    no_member: "这个队列没有这位成员。",
    running_now: "进行中",
    waiting_now: "等待中",
    sent: "已发送",
    opened: "有人打开",
    clicked: "有人点击",
    handed_off: "已转交",
    exited: "提前退出",
    campaign_type: "类型",
    steps: "步骤",
    step: "步骤",
    does: "做什么",
    entered: "进入",
    at_step_now: "现在在此",
    versions: "版本",
    deployed: "部署时间",
    file: "文件",
    pause: "暂停",
    resume: "恢复",
    paused_notice: "已暂停：步骤不再运行，等待照常计时。",
    resumed_notice: "已恢复：步骤照常运行。",
    enroll_segment: "将一个分群加入本活动",
    segment: "分群",
    dry_run_first: "先预演",
    dry_run_title: "预演结果：还没有改变任何东西",
    would_enter: "将加入",
    of_those_unreachable: "其中邮件送达不了",
    would_skip: "不会加入",
    enroll_them: "确认加入",
    enrolled_notice: "已加入",
    skipped_word: "跳过",
    why_already_in: "已在本活动中",
    why_reentry: "重入规则不允许",
    why_no_email: "没有邮箱",
    why_unsubscribed: "已退订",
    why_suppressed: "在退信/投诉抑制名单上",
    no_segments: "playbook 里没有分群。",
    nobody_at_step: "现在没有线索在这个步骤。",
    wakes_at: "唤醒时间",
    here_since: "到达时间",
    company: "公司",
    graph: "流程图",
    graph_hint: "点击一个步骤，查看现在停留在那里的线索。",
    no_campaign: "没有这个活动。",
    marketers_only: "只有市场人员和管理员可以这样做。",
    retired: "已下线",
    next_page: "下一页",
    back_to_campaign: "返回活动",
    no_campaigns: "还没有部署任何活动。",
    enroll_bad: "没有这个分群。",
    leads: "线索",
    search: "搜索",
    starts_with: "邮箱、姓名或公司开头是",
    tag: "标签",
    any_stage: "任何阶段",
    score_from: "评分不低于",
    score_to: "评分不高于",
    name: "姓名",
    no_leads_found: "没有符合条件的线索。",
    first_matches: "只显示最先找到的 50 条；再多输入几个字可以缩小范围。",
    search_bad: "搜索条件有误：",
    erase: "删除此人（不可恢复）",
    erase_title: "删除此人",
    erase_what: "将删除这条线索及其全部行为、标签、评分记录、旅程、邮件、转交和备注；只保留邮箱的哈希，以免再次发送。审计记录会保留这次删除。",
    erase_confirm: "请输入该线索的邮箱（没有邮箱则输入编号）以确认",
    erase_mismatch: "输入的内容与这条线索不符，没有删除任何东西。",
    erased: "已删除。",
    cancel: "取消",
    score_whole: "评分须为整数。",
    admins_erase: "只有管理员可以删除线索。",
};

pub const EN: Text = Text {
    lang: "en",
    other_lang: "zh",
    other_lang_name: "中文",
    sign_in: "Sign in",
    email: "E-mail",
    password: "Password",
    wrong: "The e-mail or the password is wrong.",
    too_many: "Too many attempts; try again in a minute.",
    expired_form: "This page had expired; please send it again.",
    password_set: "Your password is set; sign in.",
    signed_out: "You are signed out.",
    set_password: "Set your password",
    new_password: "New password",
    confirm_password: "The new password again",
    password_rule: "At least 10 characters; a few words together make a good one.",
    mismatch: "The two passwords differ.",
    home: "Home",
    sign_out: "Sign out",
    sign_out_everywhere: "Sign out everywhere",
    my_queues: "My queues",
    queues: "Queues",
    queue_empty: "Nothing waits in this queue.",
    lead: "Lead",
    reason: "Reason",
    status: "Status",
    sla: "SLA",
    yours: "yours",
    campaigns: "Campaigns",
    campaign: "Campaign",
    version: "Version",
    due_in: "due in",
    overdue: "overdue by",
    hours: "h",
    minutes: "min",
    claim_next: "Claim next",
    claimed: "You claimed a lead.",
    nothing_to_claim: "Nothing in this queue can be claimed now.",
    accept: "Accept",
    convert: "Convert",
    release: "Release",
    reject: "Reject",
    reject_reason: "Why reject",
    recycle: "Back to nurture after the cool-down",
    decided: "Done.",
    changed_meanwhile: "Someone acted on this lead meanwhile; reload and try again.",
    not_yours: "This lead is not yours to decide.",
    say_why: "Say why you reject it.",
    actions: "Actions",
    my_handoffs: "My claimed leads",
    queue: "Queue",
    users: "Users",
    invite: "Invite",
    role: "Role",
    password_state: "Password",
    set: "set",
    not_yet: "not yet",
    deactivated: "deactivated",
    deactivate: "Deactivate",
    new_link: "New link",
    link_once: "Send this link to them; it is shown only now and works for 72 hours:",
    admins_only: "Only admins manage users.",
    already_user: "That e-mail is a user already; make them a new link instead.",
    bad_email: "Give a valid e-mail address.",
    no_lead: "There is no such lead.",
    why: "Why this lead",
    score: "Score",
    no_points: "No points yet.",
    source: "Source",
    points: "Points",
    times: "Times",
    tags: "Tags",
    timeline: "Timeline",
    when: "When",
    what: "What",
    detail: "Detail",
    stage: "Stage",
    owner: "Owner",
    rule: "rule",
    by_hand: "by hand:",
    added: "added",
    removed: "removed",
    kind_event: "behaviour",
    kind_tag: "tag",
    kind_score: "score",
    kind_handoff: "handoff",
    kind_step: "campaign step",
    kind_message: "message",
    kind_note: "note",
    kind_call: "call",
    outcome_reached: "reached",
    outcome_voicemail: "voicemail",
    outcome_wrong_number: "wrong number",
    outcome_not_interested: "not interested",
    outcome_meeting_booked: "meeting booked",
    no_call: "No call, just a note",
    follow_up_on: "Follow up on",
    follow_up: "follow up",
    note: "Note",
    add_note: "Notes and calls",
    save_note: "Save",
    note_saved: "Saved.",
    empty_note: "Write a note, or choose how the call went.",
    call_outcome: "Call outcome",
    amount: "Deal amount",
    amount_bad: "Enter the amount as a number of at least 0, with at most two decimals.",
    contact: "Contact details",
    save_contact: "Save contact details",
    contact_saved: "Contact details saved.",
    contact_bad: "The contact details were not saved: ",
    survey: "Survey answers",
    handoffs: "Handoffs",
    no_handoffs: "Not handed off yet.",
    counted: "Behaviours that counted",
    decided_by: "Decided by",
    outcome: "Outcome",
    current_handoff: "Current handoff",
    created: "Created",
    shortcuts: "Keyboard shortcuts",
    key_claim: "claim the next lead",
    key_move: "move between leads (Enter opens)",
    key_accept: "accept the current handoff",
    key_note: "write a note or log a call",
    key_home: "back to the start page",
    key_help: "show or hide this help",
    updated: "The queues have changed.",
    close: "Close",
    no_handoff: "There is no such handoff.",
    link_expired: "This link was used already or has expired; ask an admin for a new one.",
    queue_board: "Queue board",
    open_now: "Open",
    assigned_now: "of which assigned",
    claimed_now: "Claimed",
    overdue_now: "Past SLA",
    breaches_7d: "SLA breaches, last 7 days",
    breaches_chart: "SLA breaches on each of the last 7 days",
    members: "Members",
    no_members:
        "This queue has no members; leads are only claimed by hand. Members are listed in the playbook's queues.yaml.",
    member: "Member",
    available: "Available",
    capacity: "Capacity",
    no_limit: "no limit",
    weight: "Weight",
    load: "In hand",
    save: "Save",
    member_saved: "The member's settings are saved.",
    member_bad:
        "Not saved: capacity is a whole number of 0 or more (empty for no limit), weight a whole number from 1 to 100.",
    routing: "Routing",
    routing_round_robin: "round robin",
    routing_claim: "claim",
    on_breach: "on breach",
    moves_to: "moves to",
    no_sla: "no SLA",
    sections: "Sections",
    no_member: "That person is not a member of this queue.",
    running_now: "Running",
    waiting_now: "Waiting",
    sent: "Sent",
    opened: "Opened",
    clicked: "Clicked",
    handed_off: "Handed off",
    exited: "Left early",
    campaign_type: "Type",
    steps: "Steps",
    step: "Step",
    does: "Does",
    entered: "Entered",
    at_step_now: "There now",
    versions: "Versions",
    deployed: "Deployed",
    file: "File",
    pause: "Pause",
    resume: "Resume",
    paused_notice: "Paused: no step runs; waits keep counting.",
    resumed_notice: "Resumed: the steps run again.",
    enroll_segment: "Enroll a segment",
    segment: "Segment",
    dry_run_first: "Dry run first",
    dry_run_title: "Dry run: nothing has changed yet",
    would_enter: "Would enter",
    of_those_unreachable: "Of those, no e-mail reaches",
    would_skip: "Would not enter",
    enroll_them: "Enroll them",
    enrolled_notice: "Enrolled",
    skipped_word: "skipped",
    why_already_in: "already in it",
    why_reentry: "its re-entry rule keeps them out",
    why_no_email: "no e-mail address",
    why_unsubscribed: "unsubscribed",
    why_suppressed: "suppressed (bounces, complaints)",
    no_segments: "The playbook has no segments.",
    nobody_at_step: "No lead is at this step now.",
    wakes_at: "Wakes",
    here_since: "Here since",
    company: "Company",
    graph: "Graph",
    graph_hint: "Choose a step to see the leads at it now.",
    no_campaign: "No such campaign.",
    marketers_only: "Only marketers and admins may do this.",
    retired: "retired",
    next_page: "Next page",
    back_to_campaign: "Back to the campaign",
    no_campaigns: "No campaign is deployed yet.",
    enroll_bad: "No such segment.",
    leads: "Leads",
    search: "Search",
    starts_with: "E-mail, name or company starts with",
    tag: "Tag",
    any_stage: "Any stage",
    score_from: "Score at least",
    score_to: "Score at most",
    name: "Name",
    no_leads_found: "No lead matches.",
    first_matches: "Only the first 50 matches are shown; type more to narrow them.",
    search_bad: "The search is not valid: ",
    erase: "Erase this person (cannot be undone)",
    erase_title: "Erase this person",
    erase_what: "This deletes the lead and all its events, tags, score changes, journeys, messages, handoffs and notes; only a hash of the e-mail is kept, so that nothing is sent to it again. The audit trail records the erasure.",
    erase_confirm: "Type the lead's e-mail (its id if it has none) to confirm",
    erase_mismatch: "What you typed is not this lead's; nothing was erased.",
    erased: "Erased.",
    cancel: "Cancel",
    score_whole: "a score is a whole number.",
    admins_erase: "Only admins may erase a person.",
};

/// The language of a page: asked for (`?lang=`, a form's `lang`), else the user's, else the
/// browser's first choice; Chinese unless English is preferred.
pub fn text(asked: Option<&str>, user: Option<&User>, headers: &HeaderMap) -> &'static Text {
    let pick = |code: &str| {
        if code.starts_with("en") {
            Some(&EN)
        } else if code.starts_with("zh") {
            Some(&ZH)
        } else {
            None
        }
    };
    asked
        .and_then(pick)
        .or_else(|| user.and_then(|u| u.language.as_deref()).and_then(pick))
        .or_else(|| {
            let accept = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
            accept
                .split(',')
                .map(|part| part.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
                .find_map(|code| pick(&code))
        })
        .unwrap_or(&ZH)
}

pub(super) fn role_name(t: &Text, role: Role) -> &'static str {
    match (t.lang, role) {
        ("zh", Role::Admin) => "管理员",
        ("zh", Role::Marketer) => "市场",
        ("zh", Role::Sdr) => "SDR",
        (_, Role::Admin) => "admin",
        (_, Role::Marketer) => "marketer",
        (_, Role::Sdr) => "SDR",
        (_, Role::Crm) => "CRM",
    }
}

/// Why a claim of `queue` found nothing, in the page's language: "2 open in sdr, all assigned to
/// bob@corp.example (2)".
pub(super) fn explain_empty(t: &Text, queue: &str, why: &nurture_engine::engine::NothingToClaim) -> String {
    let zh = t.lang == "zh";
    if why.open == 0 {
        return if zh {
            format!("{queue} 队列中没有待领取的线索。")
        } else {
            format!("Nothing is open in {queue}.")
        };
    }
    let others: Vec<String> = why.others.iter().map(|(m, n)| format!("{m} ({n})")).collect();
    let assigned: usize = why.others.values().sum();
    match (zh, assigned == why.open) {
        (true, true) => format!(
            "{queue} 队列有 {} 条待领取，均已分配给：{}。",
            why.open,
            others.join("、")
        ),
        (false, true) => format!("{} open in {queue}, all assigned to {}.", why.open, others.join(", ")),
        (true, false) => format!(
            "{queue} 队列有 {} 条待领取，其中 {assigned} 条已分配给：{}；请稍后再试。",
            why.open,
            others.join("、")
        ),
        (false, false) => format!(
            "{} open in {queue}, {assigned} of them assigned to {}; try again in a moment.",
            why.open,
            others.join(", ")
        ),
    }
}

/// A handoff's status in the page's language.
pub(super) fn handoff_status(t: &Text, status: HandoffStatus) -> &'static str {
    let zh = t.lang == "zh";
    match status {
        HandoffStatus::Open => {
            if zh {
                "待领取"
            } else {
                "open"
            }
        }
        HandoffStatus::Claimed => {
            if zh {
                "已领取"
            } else {
                "claimed"
            }
        }
        HandoffStatus::Accepted => {
            if zh {
                "已接受"
            } else {
                "accepted"
            }
        }
        HandoffStatus::Rejected => {
            if zh {
                "已退回"
            } else {
                "rejected"
            }
        }
        HandoffStatus::Converted => {
            if zh {
                "已成交"
            } else {
                "converted"
            }
        }
        HandoffStatus::Superseded => {
            if zh {
                "已被取代"
            } else {
                "superseded"
            }
        }
    }
}

/// A campaign's status in the page's language.
pub(super) fn campaign_status(t: &Text, status: CampaignStatus) -> &'static str {
    let zh = t.lang == "zh";
    match status {
        CampaignStatus::Active => {
            if zh {
                "运行中"
            } else {
                "active"
            }
        }
        CampaignStatus::Paused => {
            if zh {
                "已暂停"
            } else {
                "paused"
            }
        }
        CampaignStatus::Retired => {
            if zh {
                "已下线"
            } else {
                "retired"
            }
        }
    }
}

/// "due in 3 h 20 min" / "overdue by 15 min".
pub(super) fn countdown(t: &Text, due: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    let left = due - now;
    let minutes = left.num_minutes().abs();
    let span = if minutes >= 60 {
        format!("{} {} {} {}", minutes / 60, t.hours, minutes % 60, t.minutes)
    } else {
        format!("{minutes} {}", t.minutes)
    };
    if left >= chrono::Duration::zero() {
        format!("{} {span}", t.due_in)
    } else {
        format!("{} {span}", t.overdue)
    }
}

/// A lead field's label in the page's language.
pub(super) fn field_label(t: &Text, field: &'static str) -> &'static str {
    let (zh, en) = match field {
        "first_name" => ("名", "First name"),
        "last_name" => ("姓", "Last name"),
        "title" => ("职位", "Title"),
        "company" => ("公司", "Company"),
        "industry" => ("行业", "Industry"),
        "company_size" => ("公司规模", "Company size"),
        "region" => ("地区", "Region"),
        "phone" => ("电话", "Phone"),
        "timezone" => ("时区", "Time zone"),
        "source" => ("来源渠道", "Source"),
        "persona" => ("角色画像", "Persona"),
        other => (other, other),
    };
    if t.lang == "zh" {
        zh
    } else {
        en
    }
}

/// A lifecycle stage in the page's language.
pub(super) fn stage_name(t: &Text, stage: nurture_engine::lead::Stage) -> &'static str {
    use nurture_engine::lead::Stage;
    let (zh, en) = match stage {
        Stage::New => ("新线索", "new"),
        Stage::Nurturing => ("培育中", "nurturing"),
        Stage::Mql => ("市场合格线索", "MQL"),
        Stage::HandedOff => ("已转交", "handed off"),
        Stage::Accepted => ("已接受", "accepted"),
        Stage::Customer => ("客户", "customer"),
        Stage::Recycled => ("回收培育", "recycled"),
        Stage::Disqualified => ("不合格", "disqualified"),
    };
    if t.lang == "zh" {
        zh
    } else {
        en
    }
}

/// How a call went, in the page's language.
pub(super) fn outcome_name(t: &Text, outcome: nurture_engine::note::CallOutcome) -> &'static str {
    use nurture_engine::note::CallOutcome;
    match outcome {
        CallOutcome::Reached => t.outcome_reached,
        CallOutcome::Voicemail => t.outcome_voicemail,
        CallOutcome::WrongNumber => t.outcome_wrong_number,
        CallOutcome::NotInterested => t.outcome_not_interested,
        CallOutcome::MeetingBooked => t.outcome_meeting_booked,
    }
}
