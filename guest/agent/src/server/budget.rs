//! Each port's connection budget, and how a slow client is kept from
//! holding it: a connection has [`HANDSHAKE_DEADLINE`] in all to
//! authenticate (however slowly it trickles bytes), at most
//! [`MAX_PENDING`] connections of a port may be authenticating at once, and
//! when a port is full a new connection displaces the oldest one still
//! authenticating. So connections that never authenticate cannot keep out
//! one that does at once (the host's health checks), and the RPC and health
//! ports never take each other's slots.

use std::collections::VecDeque;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time a new connection has, in all, to authenticate.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// Connections of one port authenticating at once; a newer one displaces
/// the oldest beyond this.
pub const MAX_PENDING: usize = 16;

/// The connections of one port.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    next: u64,
    /// Connections still authenticating, oldest first, with a handle to
    /// close them.
    pending: VecDeque<(u64, TcpStream)>,
}

/// One admitted connection's place in its port's budget: authenticating
/// until [`Slot::authenticated`], given back on drop.
#[derive(Debug)]
pub struct Slot {
    budget: Arc<Budget>,
    id: u64,
    /// When it must have authenticated (`None` once it has).
    deadline: Option<Instant>,
    /// Displaced while it authenticated: its count was given back already.
    displaced: bool,
}

impl Budget {
    /// A budget of `limit` connections (at least one).
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit: limit.max(1),
            state: Mutex::default(),
        })
    }

    /// Admits `stream`, displacing the oldest authenticating connection
    /// when the port is full or too many authenticate; `None` when every
    /// slot is held by an authenticated connection.
    pub fn admit(self: &Arc<Budget>, stream: &TcpStream) -> Option<Slot> {
        let handle = stream.try_clone().ok()?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.open >= self.limit || state.pending.len() >= MAX_PENDING.min(self.limit) {
            let (_, oldest) = state.pending.pop_front()?;
            // Its thread sees the end of stream and gives its slot back.
            let _ = oldest.shutdown(Shutdown::Both);
            state.open = state.open.saturating_sub(1);
        }
        state.open += 1;
        state.next += 1;
        let id = state.next;
        state.pending.push_back((id, handle));
        Some(Slot {
            budget: Arc::clone(self),
            id,
            deadline: Some(Instant::now() + HANDSHAKE_DEADLINE),
            displaced: false,
        })
    }

    /// Connections counted now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.state.lock().unwrap().open
    }
}

impl Slot {
    /// The connection authenticated: no deadline, and no longer displaceable.
    pub fn authenticated(&mut self) {
        if self.deadline.take().is_some() && !self.forget_pending() {
            self.displaced = true;
        }
    }

    /// When it must have authenticated; `None` once it has.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Removes it from the pending queue; whether it was still there (not
    /// displaced, which already gave its count back).
    fn forget_pending(&self) -> bool {
        let mut state = self.budget.state.lock().unwrap_or_else(|p| p.into_inner());
        let before = state.pending.len();
        state.pending.retain(|(id, _)| *id != self.id);
        before != state.pending.len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let counted = match self.deadline {
            Some(_) => self.forget_pending(),
            None => !self.displaced,
        };
        if counted {
            let mut state = self.budget.state.lock().unwrap_or_else(|p| p.into_inner());
            state.open = state.open.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn a_full_port_displaces_the_oldest_authenticating_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let budget = Budget::new(3);
        let (_c1, s1) = pair(&listener);
        let mut first = budget.admit(&s1).unwrap();
        first.authenticated();
        let (c2, s2) = pair(&listener);
        let second = budget.admit(&s2).unwrap();
        let (_c3, s3) = pair(&listener);
        let third = budget.admit(&s3).unwrap();
        assert_eq!(budget.open(), 3);
        // Full: the fourth displaces the second (oldest authenticating),
        // never the authenticated first.
        let (_c4, s4) = pair(&listener);
        let fourth = budget.admit(&s4).unwrap();
        assert_eq!(budget.open(), 3);
        let mut byte = [0u8; 1];
        c2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(std::io::Read::read(&mut &c2, &mut byte).unwrap(), 0);
        drop(second); // its thread ends: nothing more to give back
        assert_eq!(budget.open(), 3);
        drop((third, fourth));
        assert_eq!(budget.open(), 1);
        // Every slot authenticated: a new connection is refused.
        let mut held = vec![first];
        for _ in 0..2 {
            let (_c, s) = pair(&listener);
            let mut slot = budget.admit(&s).unwrap();
            slot.authenticated();
            held.push(slot);
        }
        let (_c, s) = pair(&listener);
        assert!(budget.admit(&s).is_none());
        drop(held);
        assert_eq!(budget.open(), 0);
    }
}
