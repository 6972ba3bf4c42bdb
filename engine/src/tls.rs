//! TLS for outgoing HTTPS (the WeChat API): rustls with the `ring` provider, the one lettre's
//! SMTP already links, installed once for the process.

/// Makes `ring` the process's rustls crypto provider, unless one is installed already.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
