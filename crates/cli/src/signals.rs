//! SIGINT and SIGTERM become cancellation of the running operation; its command then
//! reports how it stopped and `main` exits with 130 or 143.

use restash_engine::events::Cancel;
use signal_hook::consts::{SIGINT, SIGTERM};

/// Cancels `cancel` on SIGINT (interrupt) and SIGTERM (terminate). With `second_ends`, a
/// second signal while the first is being handled ends the process at once.
pub fn cancel_on(cancel: &Cancel, second_ends: bool) -> anyhow::Result<()> {
    let (stop, term) = cancel.flags();
    if second_ends {
        signal_hook::flag::register_conditional_shutdown(SIGINT, 130, stop.clone())?;
        signal_hook::flag::register_conditional_shutdown(SIGTERM, 143, stop.clone())?;
    }
    signal_hook::flag::register(SIGINT, stop.clone())?;
    signal_hook::flag::register(SIGTERM, stop)?;
    signal_hook::flag::register(SIGTERM, term)?;
    Ok(())
}

/// Cancels `cancel` as an interrupt on SIGINT and SIGTERM alike (prune stops at a safe
/// point either way and exits 130, as restic does); a second signal ends the process.
pub fn interrupt_on(cancel: &Cancel) -> anyhow::Result<()> {
    let (stop, _) = cancel.flags();
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(())
}
