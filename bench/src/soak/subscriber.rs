//! A soak subscriber: connects, subscribes with `since` the last event it
//! saw, reads (answering pings) for a random lifetime, then lets go
//! abruptly in one of five ways and comes back after a random delay.
//!
//! Whenever it lets go it closes the books of its subscriptions: each
//! surely covered every `seq` up to the highest one acked to a publisher
//! before the client let go (the server cannot have removed it earlier),
//! which gives the lower bound of the counter invariant.

use super::ledger::Ledger;
use super::session::{Cursor, Ended, Session};
use super::wire::{self, FrameReader};
use super::{Ctx, Ending, Phase, Rng};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How a subscriber lets go of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chaos {
    /// close(2): FIN, or RST when unread data is left.
    Close,
    /// SO_LINGER 0, then close: RST.
    Reset,
    /// Part of a frame written, then close.
    MidFrame,
    /// shutdown(SHUT_WR): FIN, still reading until the server closes.
    HalfClose,
    /// Neither reads nor answers pings for ½ to 5 heartbeats (a vanished
    /// peer, as far as the server can tell), then close.
    Stall,
}

impl Chaos {
    pub fn name(self) -> &'static str {
        match self {
            Chaos::Close => "close",
            Chaos::Reset => "reset",
            Chaos::MidFrame => "mid_frame",
            Chaos::HalfClose => "half_close",
            Chaos::Stall => "stall",
        }
    }

    fn pick(rng: &mut Rng) -> Chaos {
        match rng.below(100) {
            0..35 => Chaos::Close,
            35..55 => Chaos::Reset,
            55..75 => Chaos::MidFrame,
            75..87 => Chaos::HalfClose,
            _ => Chaos::Stall,
        }
    }
}

/// An open WebSocket with its read buffer.
pub struct Conn {
    pub stream: TcpStream,
    pub reader: FrameReader,
    /// Our side is shut down for writing: pongs can no longer be sent.
    write_closed: bool,
}

impl Conn {
    /// Connects and upgrades; a failure is counted in the ledger.
    pub async fn open(ctx: &Ctx, source: Option<std::net::IpAddr>) -> Option<Conn> {
        let opened = async {
            let mut stream = crate::proto::connect(ctx.addr, source).await?;
            let leftover = crate::ws::handshake(&mut stream, &ctx.addr.to_string(), "/ws").await?;
            Ok::<_, std::io::Error>(Conn {
                stream,
                reader: FrameReader::new(leftover),
                write_closed: false,
            })
        };
        match tokio::time::timeout(Duration::from_secs(10), opened).await {
            Ok(Ok(conn)) => Some(conn),
            Ok(Err(e)) => {
                let text = e.to_string();
                let kind = match text.strip_prefix("upgrade refused: ") {
                    Some(status) => format!("upgrade {}", status.split(' ').nth(1).unwrap_or("?")),
                    None => "connect".to_string(),
                };
                ctx.ledger.borrow_mut().errors.http(kind, text);
                None
            }
            Err(_) => {
                ctx.ledger
                    .borrow_mut()
                    .errors
                    .http("connect timeout".into(), "no upgrade within 10 s".into());
                None
            }
        }
    }

    pub fn into_parts(self) -> (TcpStream, FrameReader) {
        (self.stream, self.reader)
    }

    /// Hands every buffered frame to the session, then writes the pongs owed.
    pub async fn process(
        &mut self,
        session: &mut Session,
        cursors: &mut [Cursor],
        ctx: &Ctx,
    ) -> std::io::Result<()> {
        {
            let mut ledger = ctx.ledger.borrow_mut();
            self.reader
                .drain(|item| session.on_item(item, &mut ledger, cursors, ctx.history_size));
        }
        if self.write_closed {
            self.reader.pongs.clear();
        }
        if !self.reader.pongs.is_empty() && session.ended.is_none() {
            let pongs = std::mem::take(&mut self.reader.pongs);
            self.stream.write_all(&pongs).await?;
        }
        Ok(())
    }

    /// Processes what the socket holds right now, without waiting.
    fn process_now(&mut self, session: &mut Session, cursors: &mut [Cursor], ctx: &Ctx) {
        loop {
            match self.reader.try_fill(&self.stream) {
                Ok(Some(n)) if n > 0 => {}
                Ok(Some(_)) => {
                    session.ended.get_or_insert(Ended::Eof);
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    session.ended.get_or_insert(Ended::Io(e.to_string()));
                    break;
                }
            }
        }
        let mut ledger = ctx.ledger.borrow_mut();
        self.reader
            .drain(|item| session.on_item(item, &mut ledger, cursors, ctx.history_size));
    }

    /// Reads and processes until the session ends or `limit` passes.
    async fn read_for(
        &mut self,
        session: &mut Session,
        cursors: &mut [Cursor],
        ctx: &Ctx,
        limit: Duration,
    ) {
        let until = tokio::time::Instant::now() + limit;
        while session.ended.is_none() {
            match tokio::time::timeout_at(until, self.reader.fill(&mut self.stream)).await {
                Err(_) => return,
                Ok(Ok(0)) => session.ended = Some(Ended::Eof),
                Ok(Err(e)) => session.ended = Some(Ended::Io(e.to_string())),
                Ok(Ok(_)) => {}
            }
            if let Err(e) = self.process(session, cursors, ctx).await {
                session.ended.get_or_insert(Ended::Io(e.to_string()));
            }
        }
    }
}

/// A stall of this many heartbeats or more must have been closed by the server.
pub const LONG_STALL_HEARTBEATS: u32 = 4;

/// A slow reader takes at most `SLOW_READ` bytes every `SLOW_PAUSE`, far
/// below the soak's rate, so its queue overflows and the server must drop
/// and signal (the `drop_oldest` policy).
const SLOW_READ: usize = 2048;
const SLOW_PAUSE: Duration = Duration::from_millis(100);

/// Why the read loop stopped.
enum Stop {
    /// The lifetime is over: let go.
    Lifetime,
    /// The server ended the connection.
    Ended,
    /// The soak is over and every topic is read up to its last acked `seq`.
    Drained,
}

pub async fn run(id: usize, topics: Vec<usize>, ctx: Rc<Ctx>) {
    let mut rng = Rng::new(ctx.seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut cursors: Vec<Cursor> = topics
        .iter()
        .map(|&topic| Cursor { topic, seen: None })
        .collect();
    let source = crate::source_ip(ctx.sources, id);
    let mut connected_before = false;
    while ctx.phase.get() == Phase::Run {
        let Some(mut conn) = Conn::open(&ctx, source).await else {
            if ctx.expect_shutdown {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if connected_before {
            ctx.ledger.borrow_mut().checks.reconnects += 1;
        }
        connected_before = true;
        let (mut session, request) = Session::subscribe(&cursors, &ctx.ledger.borrow(), id);
        session.expect_shutdown = ctx.expect_shutdown;
        if let Err(e) = conn.stream.write_all(&request).await {
            session.ended = Some(Ended::Io(e.to_string()));
        }
        let life = ctx.lifetime.map(|mean| rng.exp(mean));
        // Some connections read slowly for the first half of their life.
        let slow = life
            .filter(|_| rng.below(100) < ctx.slow_percent)
            .map(|l| Instant::now() + l / 2);
        if slow.is_some() {
            ctx.ledger.borrow_mut().checks.slow_readers += 1;
        }
        let lifetime = life.map(|l| Instant::now() + l);
        let stop = read(&mut conn, &mut session, &mut cursors, &ctx, lifetime, slow).await;
        match stop {
            Stop::Ended => {
                if ctx.expect_shutdown {
                    finish_watch(&session, &ctx);
                    return;
                }
                let mut ledger = ctx.ledger.borrow_mut();
                let mut kind = session.ended.as_ref().map(Ended::key).unwrap_or_default();
                if slow.is_some() {
                    kind.push_str(" (slow reader)");
                }
                let detail = session
                    .ended
                    .as_ref()
                    .map(Ended::detail)
                    .unwrap_or_default();
                ledger.errors.unexpected_close(kind, &detail);
                session.end(&mut ledger, |_, _, last| last);
            }
            Stop::Drained => {
                close_gracefully(&mut conn, &mut session, &mut cursors, &ctx).await;
                session.end(&mut ctx.ledger.borrow_mut(), acked_now);
                return;
            }
            Stop::Lifetime => {
                let_go(
                    Chaos::pick(&mut rng),
                    conn,
                    &mut session,
                    &mut cursors,
                    &ctx,
                    &mut rng,
                )
                .await
            }
        }
        let pause = rng.range(0.0, ctx.max_reconnect_delay.as_secs_f64());
        tokio::time::sleep(Duration::from_secs_f64(pause)).await;
    }
}

/// Every `seq` up to what publishers had acked by now.
fn acked_now(ledger: &Ledger, topic: usize, last: u64) -> u64 {
    last.max(ledger.topics[topic].acked_seq)
}

async fn read(
    conn: &mut Conn,
    session: &mut Session,
    cursors: &mut [Cursor],
    ctx: &Ctx,
    lifetime: Option<Instant>,
    slow_until: Option<Instant>,
) -> Stop {
    let mut check = tokio::time::interval(Duration::from_millis(100));
    let deadline = lifetime.map(tokio::time::Instant::from_std);
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let lifetime_over = tokio::time::sleep_until(deadline.unwrap_or(far));
    tokio::pin!(lifetime_over);
    let mut quiet_since = Instant::now();
    loop {
        if session.ended.is_some() {
            return Stop::Ended;
        }
        if ctx.phase.get() == Phase::Drain && session.all_acked() {
            let ledger = ctx.ledger.borrow();
            let caught_up = session
                .subs
                .iter()
                .all(|s| s.last >= ledger.topics[s.topic].acked_seq);
            // A last event dropped for a slow read never comes: a quiet
            // second ends the wait too.
            if caught_up || quiet_since.elapsed() > Duration::from_secs(1) {
                return Stop::Drained;
            }
        }
        let chaos_allowed = ctx.phase.get() == Phase::Run && session.all_acked();
        let slow = slow_until.is_some_and(|t| Instant::now() < t) && ctx.phase.get() == Phase::Run;
        let max = if slow { SLOW_READ } else { usize::MAX };
        tokio::select! {
            read = conn.reader.fill_at_most(&mut conn.stream, max) => {
                match read {
                    Ok(0) => session.ended = Some(Ended::Eof),
                    Ok(_) => quiet_since = Instant::now(),
                    Err(e) => session.ended = Some(Ended::Io(e.to_string())),
                }
                if let Err(e) = conn.process(session, cursors, ctx).await {
                    session.ended.get_or_insert(Ended::Io(e.to_string()));
                }
                if slow {
                    tokio::time::sleep(SLOW_PAUSE).await;
                }
            }
            _ = &mut lifetime_over, if chaos_allowed && deadline.is_some() => return Stop::Lifetime,
            _ = check.tick() => {}
        }
    }
}

/// Lets go of the connection the way `chaos` says, and closes the books.
async fn let_go(
    chaos: Chaos,
    mut conn: Conn,
    session: &mut Session,
    cursors: &mut [Cursor],
    ctx: &Ctx,
    rng: &mut Rng,
) {
    // Take in what already arrived, so the books are as fresh as can be;
    // a close found there is the server's, not ours.
    conn.process_now(session, cursors, ctx);
    if session.ended.is_some() {
        let mut ledger = ctx.ledger.borrow_mut();
        let kind = session.ended.as_ref().map(Ended::key).unwrap_or_default();
        let detail = session
            .ended
            .as_ref()
            .map(Ended::detail)
            .unwrap_or_default();
        ledger
            .errors
            .unexpected_close(format!("{kind} (when letting go)"), &detail);
        session.end(&mut ledger, |_, _, last| last);
        return;
    }
    *ctx.ledger
        .borrow_mut()
        .checks
        .chaos
        .entry(chaos.name())
        .or_default() += 1;
    // The topics' acked `seq` when the client lets go: the server had
    // every subscription until at least then.
    let acked: Vec<u64> = {
        let ledger = ctx.ledger.borrow();
        ledger.topics.iter().map(|t| t.acked_seq).collect()
    };
    let surely = |_: &Ledger, topic: usize, last: u64| last.max(acked[topic]);
    match chaos {
        Chaos::Close => drop(conn),
        Chaos::Reset => {
            let _ = conn.stream.set_zero_linger();
            drop(conn);
        }
        Chaos::MidFrame => {
            let frame =
                wire::text_frame(&serde_json::json!({"type": "ping", "request_id": "mid-frame"}));
            let cut = 1 + rng.below(frame.len() as u64 - 1) as usize;
            let _ = conn.stream.write_all(&frame[..cut]).await;
            drop(conn);
        }
        Chaos::HalfClose => {
            let _ = conn.stream.shutdown().await;
            conn.write_closed = true;
            conn.read_for(session, cursors, ctx, Duration::from_secs(2))
                .await;
            let mut ledger = ctx.ledger.borrow_mut();
            ledger.checks.half_closes += 1;
            if session.ended.is_some() {
                ledger.checks.half_closes_answered += 1;
            }
        }
        Chaos::Stall => {
            let hold = ctx.heartbeat.mul_f64(rng.range(0.5, 5.0));
            tokio::time::sleep(hold).await;
            conn.read_for(session, cursors, ctx, Duration::from_millis(500))
                .await;
            // The README: silent for two heartbeats, closed; one more for
            // the tick's granularity and one for the socket buffers to fill
            // (a busy peer is closed by the write deadline, which starts then).
            if hold >= ctx.heartbeat * LONG_STALL_HEARTBEATS {
                // Closed with a frame, a FIN or a reset: any end counts, as
                // a peer that takes no bytes cannot get a close frame.
                let mut ledger = ctx.ledger.borrow_mut();
                ledger.checks.long_stalls += 1;
                if let Some(end) = &session.ended {
                    ledger.checks.long_stalls_closed_by_server += 1;
                    *ledger.checks.stall_ends.entry(end.key()).or_default() += 1;
                }
            }
        }
    }
    session.end(&mut ctx.ledger.borrow_mut(), surely);
}

/// The end of the soak: a close frame, then the server's answer.
async fn close_gracefully(
    conn: &mut Conn,
    session: &mut Session,
    cursors: &mut [Cursor],
    ctx: &Ctx,
) {
    if conn
        .stream
        .write_all(&wire::close_frame(1000))
        .await
        .is_ok()
    {
        conn.read_for(session, cursors, ctx, Duration::from_secs(2))
            .await;
    }
}

/// The shutdown phase: how the server ended this connection.
fn finish_watch(session: &Session, ctx: &Ctx) {
    let now = ctx.ledger.borrow().now();
    ctx.endings.borrow_mut().push(Ending {
        publisher: false,
        shutting_down_at: session.shutting_down_at,
        ended: session.ended.clone(),
        ended_at: now,
        events_after_notice: session.events_after_notice,
        last: session.subs.iter().map(|s| (s.topic, s.last)).collect(),
    });
}
