//! Read-ahead for inputs on object storage. A GET costs a round trip before its first byte
//! (milliseconds on a real bucket, tens of them on some servers), and each worker reads one input
//! at a time, so a folder of many small objects would be read at the pace of a few round trips
//! at once. While a run converts, the next few whole objects (up to [`AHEAD`], each at most
//! [`LARGEST`], [`BUDGET`] in all) are fetched on threads of their own in the order the workers
//! will take them; [`super::open_raw`] hands out the fetched bytes. A fetch that fails is
//! forgotten: the worker then reads the object itself and reports what goes wrong as before.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::thread::JoinHandle;

use super::InputFile;

/// Objects fetched ahead of the one a worker takes.
const AHEAD: usize = 16;
/// Largest object fetched ahead; bigger ones are streamed by the worker as they are read.
const LARGEST: u64 = 16 << 20;
/// Bytes held by fetched objects no worker has taken yet.
const BUDGET: u64 = 96 << 20;

/// The run's read-ahead, while one is installed (see [`read_ahead`]).
static READ_AHEAD: Mutex<Option<ReadAhead>> = Mutex::new(None);

/// The objects of a run, in the order its workers take them, and the fetches under way.
struct ReadAhead {
    order: Vec<InputFile>,
    position: HashMap<String, usize>,
    /// The next object (by position) no fetch has been started for.
    next: usize,
    fetches: HashMap<usize, Fetch>,
    held: u64,
}

/// A fetch under way: the object's size, and the thread that returns its bytes.
type Fetch = (u64, JoinHandle<io::Result<Vec<u8>>>);

/// Removes the run's read-ahead when dropped (fetches still under way finish unread).
pub struct ReadAheadGuard(());

impl Drop for ReadAheadGuard {
    fn drop(&mut self) {
        *READ_AHEAD.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Installs read-ahead for `files` (whole inputs, in the order the workers take them); local
/// files and objects too big to hold are passed over, and not copied: a local run of 41,000
/// Bundles held a copy of the whole list (6 MB) for nothing. Lasts as long as the guard.
pub fn read_ahead<'a>(files: impl IntoIterator<Item = &'a InputFile>) -> ReadAheadGuard {
    let mut order: Vec<InputFile> = files
        .into_iter()
        .filter(|file| file.remote.is_some() && file.size <= LARGEST)
        .cloned()
        .collect();
    order.shrink_to_fit();
    let position = order.iter().enumerate().map(|(i, file)| (key(file), i)).collect();
    *READ_AHEAD.lock().unwrap_or_else(|p| p.into_inner()) = Some(ReadAhead {
        order,
        position,
        next: 0,
        fetches: HashMap::new(),
        held: 0,
    });
    ReadAheadGuard(())
}

fn key(file: &InputFile) -> String {
    match &file.remote {
        Some(remote) => remote.location.display(&file.relative),
        None => file.path.display().to_string(),
    }
}

/// The bytes of `file` if they were fetched ahead (and successfully), after starting the fetches
/// of the objects that follow it.
pub(super) fn take(file: &InputFile) -> Option<Vec<u8>> {
    let fetch = {
        let mut guard = READ_AHEAD.lock().unwrap_or_else(|p| p.into_inner());
        let ahead = guard.as_mut()?;
        let index = *ahead.position.get(&key(file))?;
        // The worker reads this one itself if its fetch never started.
        ahead.next = ahead.next.max(index + 1).min(ahead.order.len());
        let fetch = ahead.fetches.remove(&index);
        if let Some((size, _)) = &fetch {
            ahead.held -= size;
        }
        ahead.start_fetches(index);
        fetch
    };
    let (_, handle) = fetch?;
    handle.join().ok()?.ok()
}

impl ReadAhead {
    /// Starts fetches of the objects after `current`, as far as [`AHEAD`] and [`BUDGET`] allow.
    fn start_fetches(&mut self, current: usize) {
        while self.next < self.order.len() && self.next <= current + AHEAD {
            let file = &self.order[self.next];
            if self.held + file.size > BUDGET {
                break;
            }
            let remote = file.remote.clone().expect("only objects are fetched ahead");
            let relative = file.relative.clone();
            let handle = std::thread::spawn(move || match remote.location.get(&relative) {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => Err(io::Error::from(io::ErrorKind::NotFound)),
                Err(error) => Err(io::Error::other(format!("{error:#}"))),
            });
            self.held += file.size;
            self.fetches.insert(self.next, (file.size, handle));
            self.next += 1;
        }
    }
}
