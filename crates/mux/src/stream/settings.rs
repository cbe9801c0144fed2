//! What every stream of a client shares: settings derived once from its `MuxConfig`,
//! instead of a copy in each stream.

use std::time::Duration;

use super::INITIAL_CREDIT;
use crate::config::MuxConfig;

/// Per-stream settings, the same for every stream of a client (see [`MuxConfig`] for
/// each one's meaning and default; the values here are already clamped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamSettings {
    pub(crate) window: u64,
    pub(crate) send_limit: usize,
    pub(crate) coalesce_delay: Duration,
    pub(crate) ack_every: u32,
    pub(crate) ack_delay: Duration,
    pub(crate) max_retransmits: u32,
    pub(crate) linger: Duration,
    pub(crate) initial_surbs: u32,
    pub(crate) surbs_per_message: u32,
    pub(crate) surb_low_water: u32,
    pub(crate) surb_target: u32,
    pub(crate) surb_reserve: u32,
    pub(crate) max_surbs_per_message: u32,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_max_missed: u32,
    pub(crate) idle_timeout: Duration,
}

impl StreamSettings {
    pub(crate) fn new(cfg: &MuxConfig) -> Self {
        StreamSettings {
            window: u64::from(cfg.receive_window).max(INITIAL_CREDIT),
            send_limit: cfg.send_buffer.max(cfg.frame_payload()),
            coalesce_delay: cfg.coalesce_delay,
            ack_every: cfg.ack_every.max(1),
            ack_delay: cfg.ack_delay,
            max_retransmits: cfg.max_retransmits.max(1),
            linger: cfg.linger,
            initial_surbs: cfg.initial_surbs,
            surbs_per_message: cfg.surbs_per_message,
            surb_low_water: cfg.surb_low_water,
            surb_target: cfg.surb_target,
            surb_reserve: cfg.surb_reserve,
            max_surbs_per_message: cfg.max_surbs_per_message,
            keepalive_interval: cfg.keepalive_interval,
            // At most what a stream's (u16) count of unanswered pings can reach.
            keepalive_max_missed: cfg.keepalive_max_missed.clamp(1, u32::from(u16::MAX)),
            idle_timeout: cfg.idle_timeout,
        }
    }
}
