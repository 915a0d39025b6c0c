//! Sending what the ruler produces to its peers: alerts to every configured Alertmanager
//! (`alertmanager`, its v2 API) and recording-rule samples to Prometheus (`remote_write`).
//! Each destination has a bounded queue drained by its own thread, which sends in batches and
//! retries with exponential backoff while the peer is down; when a queue is full the oldest
//! items are dropped and counted. Knows nothing of rules or queries.

pub mod alertmanager;
pub mod remote_write;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use thiserror::Error;

/// A failed send.
#[derive(Debug, Error)]
pub enum SendError {
    /// The peer may accept it later (connection refused, 5xx, 429): the batch is kept.
    #[error("{0} (will retry)")]
    Retry(String),
    /// The peer refused the batch itself (other 4xx): it is dropped.
    #[error("{0} (dropped)")]
    Refused(String),
}

/// Counts events for `/metrics`: metric name, labels, amount.
pub type Count = Arc<dyn Fn(&str, &[(&str, &str)], u64) + Send + Sync>;

/// Backoff between retries: doubles from `MIN_BACKOFF` up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Timeout of one HTTP request to a peer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Queue<T> {
    items: Mutex<VecDeque<T>>,
    wake: Condvar,
    stop: AtomicBool,
    capacity: usize,
}

/// A bounded queue and the thread sending its items in batches.
pub struct Sender<T> {
    queue: Arc<Queue<T>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    name: String,
    dropped: Box<dyn Fn(u64) + Send + Sync>,
}

impl<T: Send + 'static> Sender<T> {
    /// Starts the thread. `send` delivers one batch of at most `max_batch` items;
    /// `dropped(n)` is told when a full queue drops `n` items.
    pub fn start(
        name: &str,
        capacity: usize,
        max_batch: usize,
        mut send: impl FnMut(&[T]) -> Result<(), SendError> + Send + 'static,
        dropped: impl Fn(u64) + Send + Sync + Clone + 'static,
    ) -> Sender<T> {
        let queue = Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            capacity,
        });
        let q = queue.clone();
        let thread_name = name.to_string();
        let drop_count = dropped.clone();
        let thread = std::thread::Builder::new()
            .name(format!("notify-{name}"))
            .spawn(move || {
                let mut backoff = MIN_BACKOFF;
                loop {
                    let batch: Vec<T> = {
                        let mut items = q.items.lock();
                        while items.is_empty() && !q.stop.load(Ordering::Acquire) {
                            q.wake.wait(&mut items);
                        }
                        if items.is_empty() {
                            return;
                        }
                        let n = items.len().min(max_batch);
                        items.drain(..n).collect()
                    };
                    match send(&batch) {
                        Ok(()) => backoff = MIN_BACKOFF,
                        Err(SendError::Refused(m)) => {
                            tracing::warn!(to = %thread_name, error = %m, items = batch.len(), "peer refused a batch; dropped");
                        }
                        Err(SendError::Retry(m)) => {
                            if q.stop.load(Ordering::Acquire) {
                                tracing::warn!(to = %thread_name, error = %m, items = batch.len(), "shutting down: unsent items dropped");
                                return;
                            }
                            tracing::warn!(to = %thread_name, error = %m, retry_in_ms = backoff.as_millis() as u64, "send failed");
                            let mut items = q.items.lock();
                            for it in batch.into_iter().rev() {
                                items.push_front(it);
                            }
                            let over = items.len().saturating_sub(q.capacity);
                            if over > 0 {
                                items.drain(..over);
                                drop_count(over as u64);
                            }
                            let until = std::time::Instant::now() + backoff;
                            while !q.stop.load(Ordering::Acquire)
                                && std::time::Instant::now() < until
                            {
                                q.wake.wait_until(&mut items, until);
                            }
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            })
            .expect("bug: cannot start a notify thread");
        Sender {
            queue,
            thread: Mutex::new(Some(thread)),
            name: name.to_string(),
            dropped: Box::new(dropped),
        }
    }

    /// Queues items; past the capacity the oldest are dropped.
    pub fn push(&self, new: impl IntoIterator<Item = T>) {
        let mut items = self.queue.items.lock();
        items.extend(new);
        let over = items.len().saturating_sub(self.queue.capacity);
        if over > 0 {
            items.drain(..over);
            (self.dropped)(over as u64);
            tracing::warn!(to = %self.name, dropped = over, "queue full: oldest items dropped");
        }
        drop(items);
        self.queue.wake.notify_one();
    }

    /// Items waiting.
    pub fn pending(&self) -> usize {
        self.queue.items.lock().len()
    }

    /// Sends what is queued (one attempt) and stops the thread.
    pub fn stop(&self) {
        self.queue.stop.store(true, Ordering::Release);
        self.queue.wake.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

/// Sends `body` with `req`; maps the outcome to [`SendError`] (5xx, 429 and transport errors
/// are retried).
pub fn send_request(req: ureq::Request, body: &[u8]) -> Result<(), SendError> {
    match req.send_bytes(body) {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, r)) => {
            let text: String = r
                .into_string()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            let msg = format!("status {code}: {}", text.trim());
            if code >= 500 || code == 429 {
                Err(SendError::Retry(msg))
            } else {
                Err(SendError::Refused(msg))
            }
        }
        Err(e) => Err(SendError::Retry(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::mpsc;

    #[test]
    fn a_full_queue_drops_the_oldest() {
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(AtomicU64::new(0));
        let (d, dr) = (delivered.clone(), dropped.clone());
        let sender = Sender::start(
            "test",
            5,
            100,
            move |batch: &[u32]| {
                let _ = started_tx.send(());
                gate_rx.recv().unwrap();
                d.lock().extend_from_slice(batch);
                Ok(())
            },
            move |n| {
                dr.fetch_add(n, Ordering::Relaxed);
            },
        );
        sender.push([0]);
        started_rx.recv().unwrap(); // item 0 is being sent; the queue is empty
        sender.push(1..=10);
        assert_eq!(sender.pending(), 5);
        assert_eq!(dropped.load(Ordering::Relaxed), 5);
        for _ in 0..2 {
            gate_tx.send(()).unwrap();
        }
        sender.stop();
        assert_eq!(*delivered.lock(), [0, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn failed_batches_are_retried_in_order() {
        let attempts = Arc::new(AtomicU64::new(0));
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let (a, d) = (attempts.clone(), delivered.clone());
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let sender = Sender::start(
            "test",
            100,
            2,
            move |batch: &[u32]| {
                if a.fetch_add(1, Ordering::Relaxed) < 2 {
                    return Err(SendError::Retry("connection refused".into()));
                }
                let mut d = d.lock();
                d.extend_from_slice(batch);
                if d.len() == 3 {
                    let _ = done_tx.send(());
                }
                Ok(())
            },
            |_| {},
        );
        sender.push([1, 2, 3]);
        done_rx.recv().unwrap();
        sender.stop();
        assert_eq!(*delivered.lock(), [1, 2, 3]);
        assert_eq!(
            attempts.load(Ordering::Relaxed),
            4,
            "two failures, then two batches"
        );
    }
}
