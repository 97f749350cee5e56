//! The connections board's arithmetic, apart from the page so that it is
//! tested without a browser: a connection's lag and queue fill, delivered
//! per second between two reads, the columns and their sort orders, and
//! the dashboard's laggiest connections.
//!
//! Written with the WASM's size in mind (the bundle has a budget): rows
//! live in a `Vec` in the server's order (by id) and are found by binary
//! search rather than in a hash map, there is one sort, and the laggiest
//! are picked without sorting. Each generic container or
//! sort over a new type is code the browser downloads.

use crate::reads::Board;
use crate::wire::ConnectionInfo;
use std::cmp::Ordering;

/// A connection's lag: the sum over its subscriptions (each already the
/// sum over the topics a pattern follows), as `GET /api/connections` says
/// it per subscription.
pub fn lag(c: &ConnectionInfo) -> u64 {
    c.subscriptions.iter().map(|s| s.lag).sum()
}

/// How full its queue is, from 0 to 1: the larger of its share of the
/// event bound and of the byte bound, since either one makes the
/// slow-consumer policy apply. (Replies count in `queued` too; they are
/// never dropped, so a queue of replies may pass 1: it is shown as full.)
pub fn fill(c: &ConnectionInfo) -> f64 {
    let share = |used: u64, bound: u64| {
        if bound == 0 {
            0.0
        } else {
            used as f64 / bound as f64
        }
    };
    share(c.queued, c.queue_limit)
        .max(share(c.queued_bytes, c.queue_bytes_limit))
        .clamp(0.0, 1.0)
}

/// The `n` connections that lag most, laggiest first (ties: the fuller
/// queue, then the older connection); connections that do not lag are
/// left out.
pub fn laggiest(all: Vec<ConnectionInfo>, n: usize) -> Vec<ConnectionInfo> {
    // Ahead of `than` in the ranking.
    let ahead = |c: &ConnectionInfo, than: &ConnectionInfo| {
        lag(c)
            .cmp(&lag(than))
            .then_with(|| fill(c).total_cmp(&fill(than)))
            .then_with(|| than.id.cmp(&c.id))
            == Ordering::Greater
    };
    // Insertion into a list of at most `n`: no sort for a handful.
    let mut top: Vec<ConnectionInfo> = Vec::with_capacity(n + 1);
    for c in all {
        if lag(&c) == 0 {
            continue;
        }
        let at = top.iter().position(|t| ahead(&c, t)).unwrap_or(top.len());
        if at < n {
            top.insert(at, c);
            top.truncate(n);
        }
    }
    top
}

/// The browser's clock in milliseconds, to time successive reads; the
/// server never compares times (its reads carry none).
pub fn now_ms() -> f64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0.0
    }
}

/// One row of the board: the connection and what is derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub info: ConnectionInfo,
    pub lag: u64,
    pub fill: f64,
    /// Events delivered per second since the previous read; `None` for the
    /// first read of the connection or a read without a time.
    pub rate: Option<f64>,
}

/// The board as the page holds it: its rows, and the read they come
/// from. Each read is compared with the one before for the rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// As the server listed them: by id.
    pub rows: Vec<Row>,
    /// Whether they are by id (the server's order; looked up by binary
    /// search then, one by one otherwise).
    pub by_id: bool,
    pub received_ms: Option<f64>,
    /// Whether a read ever came (until then the page shows its loading
    /// state, not zeros).
    pub loaded: bool,
}

impl Snapshot {
    /// The row of connection `id`.
    pub fn row(&self, id: u64) -> Option<&Row> {
        if self.by_id {
            let at = self.rows.binary_search_by(|r| r.info.id.cmp(&id)).ok()?;
            self.rows.get(at)
        } else {
            self.rows.iter().find(|r| r.info.id == id)
        }
    }

    /// The rows of `board`, with rates against `previous`.
    pub fn of(board: &Board, previous: Option<&Snapshot>) -> Snapshot {
        let elapsed = match (previous.and_then(|p| p.received_ms), board.received_ms) {
            (Some(before), Some(now)) if now > before => Some((now - before) / 1000.0),
            _ => None,
        };
        let rows = board
            .connections
            .iter()
            .map(|c| {
                let rate = elapsed.and_then(|seconds| {
                    let before = previous?.row(c.id)?.info.delivered;
                    Some(c.delivered.saturating_sub(before) as f64 / seconds)
                });
                Row {
                    info: c.clone(),
                    lag: lag(c),
                    fill: fill(c),
                    rate,
                }
            })
            .collect::<Vec<Row>>();
        Snapshot {
            by_id: rows.is_sorted_by_key(|r| r.info.id),
            rows,
            received_ms: board.received_ms,
            loaded: true,
        }
    }
}

/// The board's sortable columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// The id, which is also the order of connecting.
    Connection,
    ClientIds,
    Subscriptions,
    Lag,
    Queue,
    Dropped,
    Rate,
    Delivered,
}

impl Column {
    pub const ALL: [Column; 8] = [
        Column::Connection,
        Column::ClientIds,
        Column::Subscriptions,
        Column::Lag,
        Column::Queue,
        Column::Dropped,
        Column::Rate,
        Column::Delivered,
    ];

    /// The column's name in the page's URL (`/connections?sort=lag`).
    pub fn key(self) -> &'static str {
        match self {
            Column::Connection => "id",
            Column::ClientIds => "client",
            Column::Subscriptions => "subscriptions",
            Column::Lag => "lag",
            Column::Queue => "queue",
            Column::Dropped => "dropped",
            Column::Rate => "rate",
            Column::Delivered => "delivered",
        }
    }

    pub fn from_key(key: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.key() == key)
    }

    pub fn label(self) -> &'static str {
        match self {
            Column::Connection => "Connection",
            Column::ClientIds => "Client ids",
            Column::Subscriptions => "Subscriptions",
            Column::Lag => "Lag",
            Column::Queue => "Queue",
            Column::Dropped => "Dropped",
            Column::Rate => "Delivered/s",
            Column::Delivered => "Delivered",
        }
    }

    /// Numbers sort largest first on the first click, names and ids in
    /// their natural order.
    pub fn descending_first(self) -> bool {
        !matches!(self, Column::Connection | Column::ClientIds)
    }

    /// Right-aligned: the columns of plain figures.
    pub fn numeric(self) -> bool {
        matches!(
            self,
            Column::Lag | Column::Dropped | Column::Rate | Column::Delivered
        )
    }

    fn compare(self, a: &Row, b: &Row) -> Ordering {
        match self {
            Column::Connection => a.info.id.cmp(&b.info.id),
            Column::ClientIds => a.info.client_ids.cmp(&b.info.client_ids),
            Column::Subscriptions => a.info.subscriptions.len().cmp(&b.info.subscriptions.len()),
            Column::Lag => a.lag.cmp(&b.lag),
            Column::Queue => a
                .fill
                .total_cmp(&b.fill)
                .then_with(|| a.info.queued_bytes.cmp(&b.info.queued_bytes)),
            Column::Dropped => a.info.dropped.cmp(&b.info.dropped),
            // No rate yet sorts below every rate.
            Column::Rate => match (a.rate, b.rate) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (x, y) => x.is_some().cmp(&y.is_some()),
            },
            Column::Delivered => a.info.delivered.cmp(&b.info.delivered),
        }
    }
}

/// A sort order: a column and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: Column,
    pub descending: bool,
}

impl Default for Sort {
    /// By id: the calm order, rows stay where they are.
    fn default() -> Self {
        Sort {
            column: Column::Connection,
            descending: false,
        }
    }
}

impl Sort {
    /// From the page's query (`sort=lag&dir=asc`); the column's own first
    /// direction when `dir` is absent, the default for an unknown column.
    pub fn from_query(sort: Option<&str>, dir: Option<&str>) -> Sort {
        let Some(column) = sort.and_then(Column::from_key) else {
            return Sort::default();
        };
        let descending = match dir {
            Some("asc") => false,
            Some("desc") => true,
            _ => column.descending_first(),
        };
        Sort { column, descending }
    }

    /// After a click on `column`'s heading: the other direction of the same
    /// column, or the new column in its first direction.
    pub fn clicked(self, column: Column) -> Sort {
        if self.column == column {
            Sort {
                column,
                descending: !self.descending,
            }
        } else {
            Sort {
                column,
                descending: column.descending_first(),
            }
        }
    }

    /// The ids of `rows` in this order; ties by id, so equal rows keep
    /// their places from one read to the next.
    pub fn order<'a>(self, rows: impl Iterator<Item = &'a Row>) -> Vec<u64> {
        let mut rows: Vec<&Row> = rows.collect();
        // Ties broken by id make the order total: an unstable sort gives
        // the same result as a stable one.
        rows.sort_unstable_by(|a, b| {
            let by = self.column.compare(a, b);
            let by = if self.descending { by.reverse() } else { by };
            by.then_with(|| a.info.id.cmp(&b.info.id))
        });
        rows.into_iter().map(|r| r.info.id).collect()
    }
}

/// Whether `row` matches the board's filter (lower case): its id, address,
/// a client id or a subscription's topic contains it.
pub fn matches(row: &Row, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let c = &row.info;
    c.id.to_string().contains(needle)
        || c.remote_addr
            .as_deref()
            .is_some_and(|a| a.to_lowercase().contains(needle))
        || c.client_ids
            .iter()
            .any(|id| id.to_lowercase().contains(needle))
        || c.subscriptions
            .iter()
            .any(|s| s.topic.to_lowercase().contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SubscriptionInfo;

    fn conn(id: u64, lags: &[u64], delivered: u64) -> ConnectionInfo {
        ConnectionInfo {
            id,
            node: None,
            remote_addr: Some(format!("127.0.0.1:{}", 40000 + id)),
            connected_at: String::new(),
            transport: "websocket".into(),
            client_ids: vec![format!("client-{id}")],
            subscriptions: lags
                .iter()
                .enumerate()
                .map(|(i, lag)| SubscriptionInfo {
                    topic: format!("t{i}"),
                    pattern: false,
                    lag: *lag,
                    delivered: 0,
                    dropped: 0,
                })
                .collect(),
            queued: 0,
            queued_bytes: 0,
            queue_limit: 1024,
            queue_bytes_limit: 1 << 20,
            delivered,
            dropped: 0,
        }
    }

    #[test]
    fn lag_sums_subscriptions_and_fill_takes_the_fuller_bound() {
        let mut c = conn(1, &[2, 3], 0);
        assert_eq!(lag(&c), 5);
        assert_eq!(fill(&c), 0.0);
        c.queued = 256;
        assert_eq!(fill(&c), 0.25);
        c.queued_bytes = 1 << 19;
        assert_eq!(fill(&c), 0.5, "bytes are fuller");
        c.queued = 5000;
        assert_eq!(fill(&c), 1.0, "shown full past its bound");
        c.queue_limit = 0;
        c.queue_bytes_limit = 0;
        assert_eq!(fill(&c), 0.0, "no bound known");
    }

    #[test]
    fn laggiest_leaves_out_the_punctual_and_ranks_the_rest() {
        let all = vec![
            conn(1, &[0], 0),
            conn(2, &[5], 0),
            conn(3, &[1, 9], 0),
            conn(4, &[5], 0),
        ];
        let top: Vec<u64> = laggiest(all, 2).iter().map(|c| c.id).collect();
        assert_eq!(top, [3, 2]);
    }

    #[test]
    fn rates_come_from_two_timed_reads_of_the_same_connection() {
        let first = Board {
            connections: vec![conn(1, &[], 100)],
            received_ms: None,
        };
        let a = Snapshot::of(&first, None);
        assert_eq!(a.row(1).unwrap().rate, None);
        // The server's read has no time: no rate against it.
        let second = Board {
            connections: vec![conn(1, &[], 150), conn(2, &[], 10)],
            received_ms: Some(10_000.0),
        };
        let b = Snapshot::of(&second, Some(&a));
        assert_eq!(b.row(1).unwrap().rate, None);
        let third = Board {
            connections: vec![conn(1, &[], 250), conn(2, &[], 10)],
            received_ms: Some(12_000.0),
        };
        let c = Snapshot::of(&third, Some(&b));
        assert_eq!(c.row(1).unwrap().rate, Some(50.0));
        assert_eq!(c.row(2).unwrap().rate, Some(0.0));
    }

    #[test]
    fn sorting_by_any_column_both_ways_with_ties_by_id() {
        let board = Board {
            connections: vec![conn(1, &[0], 5), conn(2, &[7], 5), conn(3, &[7], 9)],
            received_ms: None,
        };
        let snap = Snapshot::of(&board, None);
        let order = |sort: Sort| sort.order(snap.rows.iter());
        assert_eq!(order(Sort::default()), [1, 2, 3]);
        let lag = Sort::from_query(Some("lag"), None);
        assert!(lag.descending, "numbers: largest first");
        assert_eq!(order(lag), [2, 3, 1]);
        assert_eq!(order(lag.clicked(Column::Lag)), [1, 2, 3]);
        assert_eq!(order(lag.clicked(Column::Delivered)), [3, 1, 2]);
        assert_eq!(
            Sort::from_query(Some("nope"), Some("desc")),
            Sort::default()
        );
        for column in Column::ALL {
            assert_eq!(Column::from_key(column.key()), Some(column));
            assert_eq!(
                order(Sort {
                    column,
                    descending: false
                })
                .len(),
                3
            );
        }
    }

    #[test]
    fn the_filter_looks_at_ids_addresses_clients_and_topics() {
        let board = Board {
            connections: vec![conn(12, &[0], 0)],
            received_ms: None,
        };
        let snap = Snapshot::of(&board, None);
        let row = snap.row(12).unwrap();
        for needle in ["", "12", "40012", "client-1", "t0"] {
            assert!(matches(row, needle), "{needle}");
        }
        assert!(!matches(row, "orders"));
    }
}
