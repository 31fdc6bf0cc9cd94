//! Gathering one answer from each of many actors with a single wake-up.
//!
//! Asking 10,000 domain actors with `send` and awaiting each answer costs a cross-thread wake-up
//! per answer. A re-exec asks every domain at once (freeze, rebuild, thaw) while guests wait,
//! so it sends each domain a [`Fanin`] handle instead: the domain puts its answer in and drops
//! the handle, and when the last handle is gone the whole list is delivered at once. A message
//! that is never handled (its actor stopped) drops its handle too, so the gathering never hangs.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// A handle to put one answer in; cloned into every message.
pub struct Fanin<T> {
    items: Mutex<Vec<T>>,
    done: Mutex<Option<oneshot::Sender<Vec<T>>>>,
}

/// A new gathering: the handle to clone into messages, and where the answers arrive once
/// every clone is dropped.
pub fn fanin<T: Send + 'static>(capacity: usize) -> (Arc<Fanin<T>>, oneshot::Receiver<Vec<T>>) {
    let (tx, rx) = oneshot::channel();
    let f = Fanin {
        items: Mutex::new(Vec::with_capacity(capacity)),
        done: Mutex::new(Some(tx)),
    };
    (Arc::new(f), rx)
}

impl<T> Fanin<T> {
    /// Puts an answer in.
    pub fn push(&self, item: T) {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(item);
    }
}

impl<T> Drop for Fanin<T> {
    fn drop(&mut self) {
        let items = std::mem::take(self.items.get_mut().unwrap_or_else(|e| e.into_inner()));
        if let Some(tx) = self
            .done
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = tx.send(items);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_arrive_together_when_the_last_handle_goes_even_unanswered_ones() {
        let (f, mut rx) = fanin::<u32>(3);
        let handles: Vec<_> = (0..3).map(|_| f.clone()).collect();
        drop(f);
        handles[0].push(1);
        handles[2].push(3);
        let mut handles = handles.into_iter();
        drop(handles.next());
        assert!(rx.try_recv().is_err(), "not before every handle is gone");
        drop(handles.next()); // never answered, like a stopped actor's message
        drop(handles.next());
        let mut got = rx.try_recv().unwrap();
        got.sort();
        assert_eq!(got, vec![1, 3]);
    }
}
