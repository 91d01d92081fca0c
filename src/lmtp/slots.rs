//! The LMTP server's connection slots: who holds one, and who gives one up
//! when a new client needs it, so that clients that connect and say
//! nothing cannot lock Postfix out (issue 18).
//!
//! A slot is *idle* while its connection waits for input outside a
//! transaction (before LHLO, between messages), *busy* while it handles
//! input (until its replies are written) or is in a transaction. When all `max_connections` slots are
//! taken, a new client takes the slot of the connection idle longest, which
//! is answered `421 4.4.2` and closed; a connection in a transaction is
//! never evicted. Only when every slot is busy is the new client refused
//! (`421 4.3.2`). Postfix's own connections answer at once and so are idle
//! only for moments: silent ones are evicted first, and Postfix, which
//! retries a 421 at its next try anyway, loses at worst a cached connection.
//!
//! Eviction alone cannot stop a peer that opens transactions and trickles
//! them (each byte restarts the in-transaction idle limit): no slot of
//! those is ever idle. So one TCP address holds at most
//! `max_connections_per_peer` slots; at that cap its new connection takes
//! its own longest-idle slot, else is refused. A cap by address alone
//! would not do: a hostile local user connects from 127.0.0.1 like Postfix
//! (a cap would then lock Postfix out as well), and every unix-socket peer
//! looks the same. Hence eviction for everyone, and the cap only where it
//! tells peers apart (TCP addresses; unix-socket peers have no cap:
//! the socket's mode already decides who may connect).
//!
//! An evicted connection's thread sees it within the server's read tick
//! and writes its 421 with a short timeout, so threads outnumber slots
//! only by the evictions of the last moment; a thread blocked writing to
//! a client that does not read is busy, never evicted.
//!
//! No I/O here: the server's connection thread looks at its [`Held`] slot
//! before it handles input ([`Held::busy`]) and gives it back ([`Held::idle`]).

use crate::reply::{Reply, E_BAD_CONNECTION, E_SHUTTING_DOWN, NOT_AVAILABLE};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Waiting for input outside a transaction: may be evicted.
const IDLE: u8 = 0;
/// Handling input, or in a transaction: never evicted.
const BUSY: u8 = 1;
/// Its slot was given to another client: close with [`EVICTED`].
const GONE: u8 = 2;

/// Every slot busy (in a transaction or handling input).
pub const ALL_BUSY: Reply = Reply::new(NOT_AVAILABLE, E_SHUTTING_DOWN, "too many connections");
/// Every slot of this TCP address busy.
pub const PEER_BUSY: Reply = Reply::new(
    NOT_AVAILABLE,
    E_SHUTTING_DOWN,
    "too many connections from your address",
);
/// Said to an idle connection whose slot another client took.
pub const EVICTED: Reply = Reply::new(
    NOT_AVAILABLE,
    E_BAD_CONNECTION,
    "idle while another client needs the connection slot",
);

/// How many slots there are, and how many one TCP address may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_connections`.
    pub total: usize,
    /// `max_connections_per_peer`.
    pub per_peer: usize,
}

/// One connection's slot.
struct Slot {
    state: AtomicU8,
    /// Milliseconds from [`Slots::epoch`] to the last progress.
    idle_since: AtomicU64,
    /// The TCP peer's address; `None` for a unix socket.
    ip: Option<IpAddr>,
    /// The peer as logged.
    name: String,
}

/// The table of slots, shared by the accept loop and the connections.
pub struct Slots {
    epoch: Instant,
    held: Mutex<Vec<Arc<Slot>>>,
}

/// A slot held by a connection; given back when dropped.
pub struct Held {
    slots: Arc<Slots>,
    slot: Arc<Slot>,
}

/// A new client was given a slot: the slot, and the peers evicted for it.
pub struct Admitted {
    /// The new client's slot.
    pub held: Held,
    /// The peers (as logged) whose idle connections gave up their slot.
    pub evicted: Vec<String>,
}

impl Slots {
    /// An empty table.
    pub fn new() -> Arc<Slots> {
        Arc::new(Slots {
            epoch: Instant::now(),
            held: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Slot>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Slots held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// A slot for a new client (`ip`: its TCP address), evicting idle
    /// connections as needed; else the reply that refuses it.
    pub fn admit(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        name: &str,
        limits: Limits,
    ) -> Result<Admitted, Reply> {
        let mut held = self.lock();
        let mut evicted = Vec::new();
        if let Some(ip) = ip {
            let mine = held.iter().filter(|s| s.ip == Some(ip)).count();
            if mine >= limits.per_peer {
                let victim = evict_oldest(&mut held, |s| s.ip == Some(ip));
                evicted.push(victim.ok_or(PEER_BUSY)?);
            }
        }
        // A loop: max_connections may have shrunk on reload.
        while held.len() >= limits.total.max(1) {
            evicted.push(evict_oldest(&mut held, |_| true).ok_or(ALL_BUSY)?);
        }
        let slot = Arc::new(Slot {
            state: AtomicU8::new(IDLE),
            idle_since: AtomicU64::new(self.millis(Instant::now())),
            ip,
            name: name.to_string(),
        });
        held.push(slot.clone());
        let held = Held {
            slots: self.clone(),
            slot,
        };
        Ok(Admitted { held, evicted })
    }
}

/// Evicts the connection idle longest among those `which` selects;
/// returns its peer, or `None` when none of them is idle.
fn evict_oldest(held: &mut Vec<Arc<Slot>>, which: impl Fn(&Slot) -> bool) -> Option<String> {
    let mut idle: Vec<(u64, usize)> = held
        .iter()
        .enumerate()
        .filter(|(_, s)| which(s) && s.state.load(Ordering::SeqCst) == IDLE)
        .map(|(i, s)| (s.idle_since.load(Ordering::SeqCst), i))
        .collect();
    idle.sort_unstable();
    // The compare-exchange loses to a connection that just got input: it
    // handles that input, and the next candidate is tried.
    let i = idle.into_iter().map(|(_, i)| i).find(|&i| {
        held[i]
            .state
            .compare_exchange(IDLE, GONE, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })?;
    Some(held.swap_remove(i).name.clone())
}

impl Held {
    /// Marks the slot busy before input is handled; `false` when it was
    /// given away (the connection must close with [`EVICTED`] instead).
    pub fn busy(&self) -> bool {
        let state = &self.slot.state;
        state
            .compare_exchange(IDLE, BUSY, Ordering::SeqCst, Ordering::SeqCst)
            .map_or_else(|now| now == BUSY, |_| true)
    }

    /// Marks the slot idle (outside a transaction, waiting for input)
    /// since `since`, the last progress.
    pub fn idle(&self, since: Instant) {
        let millis = self.slots.millis(since);
        self.slot.idle_since.store(millis, Ordering::SeqCst);
        let _ = self
            .slot
            .state
            .compare_exchange(BUSY, IDLE, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether the slot was given to another client.
    pub fn evicted(&self) -> bool {
        self.slot.state.load(Ordering::SeqCst) == GONE
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        if let Some(i) = held.iter().position(|s| Arc::ptr_eq(s, &self.slot)) {
            held.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        total: 3,
        per_peer: 2,
    };

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn a_new_client_takes_the_slot_idle_longest() {
        let slots = Slots::new();
        let admit = |name: &str| slots.admit(None, name, LIMITS).map(|a| a.held);
        let a = admit("a").unwrap();
        let b = admit("b").unwrap();
        let c = admit("c").unwrap();
        let later = Instant::now() + Duration::from_secs(1);
        a.busy();
        a.idle(later);
        let d = slots.admit(None, "d", LIMITS).unwrap();
        assert_eq!(d.evicted.len(), 1);
        // b and c were idle since they connected, before a's last progress.
        assert!(b.evicted() || c.evicted());
        assert!(!a.evicted());
        assert!(!b.busy() || !c.busy());
        assert_eq!(slots.len(), 3);
        drop((b, c));
        assert_eq!(slots.len(), 2);
    }

    #[test]
    fn busy_slots_are_never_evicted() {
        let slots = Slots::new();
        let all: Vec<Held> = (0..3)
            .map(|i| slots.admit(None, &i.to_string(), LIMITS).unwrap().held)
            .collect();
        assert!(all.iter().all(Held::busy));
        let refused = slots.admit(None, "x", LIMITS).err().expect("refused");
        assert_eq!(refused, ALL_BUSY);
        assert!(all.iter().all(|h| !h.evicted()));
        all[1].idle(Instant::now());
        assert!(slots.admit(None, "y", LIMITS).is_ok());
        assert!(all[1].evicted());
    }

    #[test]
    fn one_address_holds_at_most_its_share() {
        let slots = Slots::new();
        let a = slots.admit(ip(1), "a", LIMITS).unwrap().held;
        let b = slots.admit(ip(1), "b", LIMITS).unwrap().held;
        assert!(a.busy() && b.busy());
        assert_eq!(slots.admit(ip(1), "c", LIMITS).err(), Some(PEER_BUSY));
        // Another address still gets the free slot.
        let other = slots.admit(ip(2), "d", LIMITS).unwrap();
        assert!(other.evicted.is_empty());
        // At its cap with an idle slot, the address evicts its own.
        b.idle(Instant::now());
        let again = slots.admit(ip(1), "e", LIMITS).unwrap();
        assert_eq!(again.evicted, vec!["b".to_string()]);
        assert!(!other.held.evicted());
    }
}
