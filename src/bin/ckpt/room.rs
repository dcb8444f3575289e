//! [`Room`]: the ranks of one sharded save, threads of this process, agreeing in memory
//! through `distributed::Coordinator`. A rank whose save fails [`leaves`](Seat) the room, and
//! the others stop waiting for it at once, failing alike, where ranks coordinating through
//! the directory would wait out the job's timeout (10 minutes) for a vote or a commit that
//! never comes.

use std::sync::{Condvar, Mutex, MutexGuard};

use ckpt::distributed::{CoordinationError, Coordinator};

/// What the ranks of one save share.
pub(crate) struct Room {
    world: usize,
    state: Mutex<State>,
    changed: Condvar,
}

/// The collectives run one after another, each by every rank in turn: the state of the one
/// under way of each kind.
struct State {
    /// Each rank's bytes of the all-gather under way, once it gave them.
    gathered: Vec<Option<Vec<u8>>>,
    /// How many ranks took the all-gather's result: the last one clears it for the next.
    taken: usize,
    /// How many ranks reached the barrier under way.
    arrived: usize,
    /// How many barriers all ranks passed.
    barriers: u64,
    /// The first rank that left without finishing.
    failed: Option<usize>,
}

impl Room {
    /// A room for the `world` ranks of one save.
    pub(crate) fn new(world: usize) -> Self {
        Room {
            world,
            state: Mutex::new(State {
                gathered: vec![None; world],
                taken: 0,
                arrived: 0,
                barriers: 0,
                failed: None,
            }),
            changed: Condvar::new(),
        }
    }

    /// Rank `rank`'s place: its coordinator, which fails the others if dropped before
    /// [`Seat::done`].
    pub(crate) fn seat(&self, rank: usize) -> Seat<'_> {
        Seat {
            room: self,
            rank,
            done: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A rank that panicked while holding the lock left the state as consistent as any
        // other moment: every change is one assignment.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `ready` holds or a rank has left, which is an error.
    fn wait_for<'s>(
        &'s self,
        mut state: MutexGuard<'s, State>,
        ready: impl Fn(&State) -> bool,
    ) -> Result<MutexGuard<'s, State>, CoordinationError> {
        loop {
            // What every rank reached stands, even if one fails right after.
            if ready(&state) {
                return Ok(state);
            }
            if let Some(rank) = state.failed {
                return Err(CoordinationError::new(format!(
                    "rank {rank} of the split failed"
                )));
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// One rank's coordinator. Dropped before [`done`](Seat::done), as when its save returns an
/// error or panics, it tells the others that this rank left.
pub(crate) struct Seat<'r> {
    room: &'r Room,
    rank: usize,
    done: bool,
}

impl Seat<'_> {
    /// This rank's save finished.
    pub(crate) fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut state = self.room.lock();
            state.failed.get_or_insert(self.rank);
            self.room.changed.notify_all();
        }
    }
}

impl Coordinator for Seat<'_> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.room.world
    }

    fn barrier(&self) -> Result<(), CoordinationError> {
        let mut state = self.room.lock();
        let passed = state.barriers;
        state.arrived += 1;
        if state.arrived == self.room.world {
            state.arrived = 0;
            state.barriers += 1;
            self.room.changed.notify_all();
            return Ok(());
        }
        drop(self.room.wait_for(state, |s| s.barriers != passed)?);
        Ok(())
    }

    fn all_gather(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CoordinationError> {
        let state = self.room.lock();
        // This rank's bytes of the last all-gather are cleared once every rank took it.
        let mut state = self
            .room
            .wait_for(state, |s| s.gathered[self.rank].is_none())?;
        state.gathered[self.rank] = Some(bytes.to_vec());
        self.room.changed.notify_all();
        let mut state = self
            .room
            .wait_for(state, |s| s.gathered.iter().all(Option::is_some))?;
        let all: Vec<Vec<u8>> = state.gathered.iter().flatten().cloned().collect();
        state.taken += 1;
        if state.taken == self.room.world {
            state.taken = 0;
            state.gathered.iter_mut().for_each(|g| *g = None);
            self.room.changed.notify_all();
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_gather_and_meet() {
        let room = Room::new(3);
        /// What each rank gathered, by rank.
        type Gathered = Vec<Vec<u8>>;
        let all: Vec<(Gathered, Gathered)> = std::thread::scope(|s| {
            let ranks: Vec<_> = (0..3u8)
                .map(|rank| {
                    let room = &room;
                    s.spawn(move || {
                        // Collectives one after another, as a save makes them.
                        let seat = room.seat(usize::from(rank));
                        let first = seat.all_gather(&[rank; 2]).unwrap();
                        let second = seat.all_gather(&[rank + 10]).unwrap();
                        seat.barrier().unwrap();
                        seat.barrier().unwrap();
                        seat.done();
                        (first, second)
                    })
                })
                .collect();
            ranks.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for (first, second) in all {
            assert_eq!(first, [vec![0, 0], vec![1, 1], vec![2, 2]]);
            assert_eq!(second, [vec![10], vec![11], vec![12]]);
        }
    }

    #[test]
    fn a_rank_that_leaves_fails_the_others_at_once() {
        let room = Room::new(3);
        let errors: Vec<String> = std::thread::scope(|s| {
            let waiting: Vec<_> = (0..2)
                .map(|rank| {
                    let room = &room;
                    s.spawn(move || {
                        let seat = room.seat(rank);
                        let err = if rank == 0 {
                            seat.all_gather(b"manifest").unwrap_err()
                        } else {
                            seat.barrier().unwrap_err()
                        };
                        err.to_string()
                    })
                })
                .collect();
            // Rank 2's save fails: its seat is dropped unfinished.
            drop(room.seat(2));
            waiting.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(errors, ["rank 2 of the split failed"; 2]);
    }
}
