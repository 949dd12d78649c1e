//! Access log lines: a listener's loggers render what a request or connection did, and the
//! lines go to the driver, which writes them off the loop.

use bytes::Bytes;

use crate::config::AccessLog;
use crate::format::Facts;
use crate::io::Output;
use crate::transport::Wire;

/// One line per logger, in the config's order.
pub(crate) fn emit(wire: &mut Wire, logs: &[AccessLog], facts: &Facts<'_>) {
    for log in logs {
        let mut line = String::with_capacity(256);
        log.format.render(facts, &mut line);
        wire.push(Output::Log { sink: log.sink, line: Bytes::from(line) });
    }
}
