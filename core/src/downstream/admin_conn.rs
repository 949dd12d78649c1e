//! A connection to the admin listener: HTTP/1.1 requests answered by [`crate::admin`].

use std::time::Instant;

use bytes::BytesMut;

use crate::admin::{self, ServerState};
use crate::codec::http1::{self, BodyKind, Limits};
use crate::codec::LocalReply;
use crate::downstream::ctx::Ctx;
use crate::downstream::local_reply;
use crate::io::ConnId;
use crate::transport::{Close, ConnEvent};

/// Admin connections keep alive between requests; they never carry request bodies.
#[derive(Default)]
pub(crate) struct AdminConn {
    head: BytesMut,
    /// A response is queued and not yet flushed.
    busy: bool,
}

impl AdminConn {
    /// True between requests, with nothing queued: safe to close when shutting down.
    pub(crate) fn is_idle(&self) -> bool {
        self.head.is_empty() && !self.busy
    }

    /// Returns how to close the connection, when it should end.
    pub(crate) fn on_event(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        id: ConnId,
        event: ConnEvent,
        state: ServerState,
    ) -> Option<Close> {
        match event {
            ConnEvent::Data(data) => {
                self.head.extend_from_slice(&data);
                self.answer(ctx, now, id, state)
            }
            ConnEvent::ReadClosed => Some(Close::Flush),
            ConnEvent::Closed => Some(Close::Abort),
            ConnEvent::Flushed => {
                self.busy = ctx.wire.queued(id) > 0;
                (self.is_idle() && ctx.draining()).then_some(Close::Flush)
            }
            _ => None,
        }
    }

    fn answer(&mut self, ctx: &mut Ctx, now: Instant, id: ConnId, state: ServerState) -> Option<Close> {
        let limits = Limits { max_head_bytes: 60 * 1024, max_headers: 100, accept_http_10: true };
        loop {
            let (head, consumed) = match http1::parse_request_head(&self.head, &limits) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return None,
                Err(error) => {
                    let date = ctx.clock.date(now);
                    let status = error.status();
                    let reply = local_reply::text(status, http1::reason_phrase(status));
                    let reply = http1::encode_reply(&reply, &date, true);
                    ctx.wire.write(id, reply);
                    return Some(Close::Flush);
                }
            };
            let _ = self.head.split_to(consumed);
            let has_body = !matches!(http1::request_body(&head), Ok(BodyKind::Empty));
            let response = admin::respond(
                &ctx.shared.stats,
                head.method.as_str(),
                &String::from_utf8_lossy(&head.target),
                state,
            );
            let keep_alive = !has_body && !ctx.draining() && head.keep_alive();
            let date = ctx.clock.date(now);
            let reply = LocalReply {
                status: response.status,
                content_type: Some(response.content_type),
                body: &response.body,
                extra: &[],
                sized: true,
            };
            let mut reply = http1::encode_reply(&reply, &date, !keep_alive);
            if head.method == http1::Method::Head {
                reply.truncate(reply.len() - response.body.len());
            }
            ctx.wire.write(id, reply);
            self.busy = true;
            if !keep_alive {
                return Some(Close::Flush);
            }
        }
    }
}
