//! Counters a stream and a client expose through plain structs.

use std::time::Duration;

/// Counters of one stream, read through the stream handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamMetrics {
    /// Application bytes accepted from the writer.
    pub bytes_written: u64,
    /// Application bytes handed to the reader.
    pub bytes_read: u64,
    /// Frames transmitted (including retransmissions and acks).
    pub frames_sent: u64,
    /// Frames received for this stream.
    pub frames_received: u64,
    /// Frames sent again after a timeout or a SACK gap.
    pub retransmits: u64,
    /// Data frames received twice (dropped).
    pub duplicates: u64,
    /// Data frames that arrived ahead of a gap and were buffered.
    pub out_of_order: u64,
    /// Acknowledgements sent (standalone or piggybacked).
    pub acks_sent: u64,
    /// Acknowledgements received.
    pub acks_received: u64,
    /// Acknowledgements that named sequence numbers never sent (ignored).
    pub forged_acks: u64,
    /// Reply SURBs attached to this stream's outbound messages.
    pub surbs_attached: u64,
    /// SURB requests from the peer that asked for more than our policy grants (the
    /// grant was capped at what the peer can use).
    pub surb_requests_capped: u64,
    /// Times payload (data, a retransmission or the FIN) waited in the stream because
    /// the reply SURBs for the opener were down to the ack reserve (listener side).
    pub surb_stalls: u64,
    /// Times a write found no credit or send-buffer room and had to wait.
    pub credit_stalls: u64,
    /// Inbound frames refused because a buffer bound or budget was hit.
    pub frames_refused: u64,
    /// Reply SURBs the network holds for answering this stream's opener (listener
    /// side, when the network reports it), as of our last transmission.
    pub surbs_available: Option<u32>,
    /// Keepalive pings sent.
    pub pings_sent: u64,
    /// Smoothed round-trip time, once measured.
    pub srtt: Option<Duration>,
    /// The smallest round trip measured on this stream (millisecond resolution).
    pub min_rtt: Option<Duration>,
    /// The stream's send window: the bytes it may have unacknowledged now, the smaller
    /// of its send buffer and what the peer's flow-control credit allows.
    pub send_window: u64,
    /// Current retransmission timeout.
    pub rto: Duration,
}

/// What a stream counts as it runs: [`StreamMetrics`] without the figures computed
/// when they are read (round trips, timeout, window), so every stream does not carry
/// 56 bytes it never updates. Counts of events (not bytes) are `u32`s that saturate
/// ([`bump`]): 44 bytes less in every stream; four billion of one event on one stream
/// is beyond any stream's life, and a peer that drives one that far only pins it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamCounters {
    pub(crate) bytes_written: u64,
    pub(crate) bytes_read: u64,
    pub(crate) frames_sent: u64,
    pub(crate) frames_received: u64,
    pub(crate) retransmits: u32,
    pub(crate) duplicates: u32,
    pub(crate) out_of_order: u32,
    pub(crate) acks_sent: u32,
    pub(crate) acks_received: u32,
    pub(crate) forged_acks: u32,
    pub(crate) surbs_attached: u64,
    pub(crate) surb_requests_capped: u32,
    pub(crate) surb_stalls: u32,
    pub(crate) credit_stalls: u32,
    pub(crate) frames_refused: u32,
    pub(crate) surbs_available: Option<u32>,
    pub(crate) pings_sent: u32,
    pub(crate) send_window: u64,
}

/// Counts one more event, saturating at `u32::MAX`.
pub(crate) fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}

impl StreamCounters {
    /// The counters as [`StreamMetrics`]; the computed figures are left at their
    /// defaults for the stream to fill in.
    pub(crate) fn to_metrics(self) -> StreamMetrics {
        StreamMetrics {
            bytes_written: self.bytes_written,
            bytes_read: self.bytes_read,
            frames_sent: self.frames_sent,
            frames_received: self.frames_received,
            retransmits: u64::from(self.retransmits),
            duplicates: u64::from(self.duplicates),
            out_of_order: u64::from(self.out_of_order),
            acks_sent: u64::from(self.acks_sent),
            acks_received: u64::from(self.acks_received),
            forged_acks: u64::from(self.forged_acks),
            surbs_attached: self.surbs_attached,
            surb_requests_capped: u64::from(self.surb_requests_capped),
            surb_stalls: u64::from(self.surb_stalls),
            credit_stalls: u64::from(self.credit_stalls),
            frames_refused: u64::from(self.frames_refused),
            surbs_available: self.surbs_available,
            pings_sent: u64::from(self.pings_sent),
            send_window: self.send_window,
            ..StreamMetrics::default()
        }
    }
}

/// Counters of the whole client (all streams and the router).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientMetrics {
    /// Streams opened by us.
    pub streams_opened: u64,
    /// Streams accepted from peers.
    pub streams_accepted: u64,
    /// `Open`s refused because the backlog or the inbound stream limit was full.
    pub opens_refused: u64,
    /// Of those, opens refused by a per-peer limit (streams, backlog, connection
    /// window, number of peers) or because their initial credit did not fit the budget.
    pub peer_limit_refusals: u64,
    /// Duplicate `Open`s for a live stream (ignored, re-acknowledged).
    pub duplicate_opens: u64,
    /// Inbound messages that were not valid stream frames.
    pub malformed_frames: u64,
    /// Frames for a known stream id that came with the wrong sender tag (dropped).
    pub wrong_sender: u64,
    /// Frames for unknown streams that were dropped.
    pub unknown_stream_frames: u64,
    /// `Reset(UNKNOWN_STREAM)` answers sent for frames of streams we do not have
    /// (rate-limited).
    pub unknown_stream_resets: u64,
    /// Frames held because they overtook their `Open`.
    pub orphan_frames_held: u64,
    /// Orphan frames dropped (bounds or age).
    pub orphan_frames_dropped: u64,
    /// Inbound frames refused because the client-wide inbound budget was spent.
    pub budget_refusals: u64,
    /// Non-stream messages passed to the plain-message channel.
    pub plain_messages: u64,
    /// Non-stream messages dropped because the plain-message queue was full.
    pub plain_messages_dropped: u64,
    /// Bytes currently buffered inbound across all streams.
    pub inbound_bytes: u64,
    /// Streams currently in the table.
    pub live_streams: u64,
    /// The path delay the client's streams measured (base and current round trip, and
    /// the queueing between them); `None` before the first acknowledgement.
    pub path_delay: Option<crate::PathDelay>,
    /// The pace of a transport that paces itself (the Nym adapter): one packet per this
    /// interval, as the delay controller last set it; `None` for a transport that bounds
    /// its queue instead (the simulator) or before the first acknowledgement.
    pub send_pace: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event count stops at its maximum instead of wrapping to zero (or panicking in
    /// a debug build), and reaches the public metrics whole.
    #[test]
    fn event_counts_saturate() {
        let mut c = StreamCounters {
            forged_acks: u32::MAX - 1,
            ..StreamCounters::default()
        };
        bump(&mut c.forged_acks);
        bump(&mut c.forged_acks);
        assert_eq!(c.forged_acks, u32::MAX);
        assert_eq!(c.to_metrics().forged_acks, u64::from(u32::MAX));
    }
}
