//! The engine: codes a planned file chunk by chunk, in parallel, into a container, and back.
//!
//! Workers code chunks into reusable slots a few chunks ahead of the calling thread, which consumes them
//! strictly in order (writes them out). Output therefore never depends on the thread count,
//! and memory stays bounded by the chunks in flight, not the file. With one thread the same code runs on
//! the calling thread with no pool: that serial path is the reference that tests hold the parallel one to,
//! byte for byte.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex};

use rayon::prelude::*;
use tenzip_codec::{decode_chunk, encode_chunk, Layout, Preference, Scratch};
use tenzip_container::{
    Checksum, Chunk, Container, Manifest, Segment, Source as SourceFile, Writer,
};

use crate::{ErrorKind, Plan, Progress, Source};

/// Options for compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressOptions {
    /// Original bytes per chunk (rounded down to whole values). Smaller chunks adapt better to local
    /// statistics and parallelise finer; larger ones amortise code tables.
    pub chunk_size: usize,
    /// Worker threads; 0 means one per core, 1 runs serially on the calling thread.
    pub threads: usize,
    /// Store the file as opaque bytes instead of parsing it.
    pub generic: bool,
    /// Replace an existing output file.
    pub overwrite: bool,
    /// Smallest file, or faster restores for a slightly larger one (`tenzip compress --fast`).
    pub preference: Preference,
    /// Advanced by the original bytes of each chunk as it is written.
    pub progress: Progress,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            chunk_size: 1 << 20,
            threads: 0,
            generic: false,
            overwrite: false,
            preference: Preference::Size,
            progress: Progress::default(),
        }
    }
}

/// Options for decompression and verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecompressOptions {
    /// Worker threads; 0 means one per core, 1 runs serially on the calling thread.
    pub threads: usize,
    /// Replace an existing output file.
    pub overwrite: bool,
    /// Advanced by the original bytes of each chunk as it is restored.
    pub progress: Progress,
}

thread_local! {
    /// Each worker keeps its codec buffers from chunk to chunk.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Result buffers that outlive the call that filled them: the next call takes them back already grown and
/// touched. Fresh ones each call cost a page fault every 4 KiB of output, a tenth of the work of a two-thread
/// compression of a small file. Keeps at most [`KEPT_SLOT_BYTES`] between calls (a window of many threads
/// can hold far more while it runs), the rest freed.
struct Slots<S>(Mutex<Vec<S>>);

/// Bytes of result buffers kept between calls: a two-thread window of 1 MiB chunks, and then some.
const KEPT_SLOT_BYTES: usize = 64 << 20;

/// A result buffer: its heap bytes are what [`Slots`] counts.
trait Slot: Default {
    fn heap_bytes(&self) -> usize;
}

impl Slot for Vec<u8> {
    fn heap_bytes(&self) -> usize {
        self.capacity()
    }
}

impl Slot for CodedSlot {
    fn heap_bytes(&self) -> usize {
        self.payload.capacity()
    }
}

impl<S: Slot> Slots<S> {
    const fn new() -> Self {
        Slots(Mutex::new(Vec::new()))
    }

    fn take(&self) -> S {
        self.lock().pop().unwrap_or_default()
    }

    fn give_back(&self, slots: impl IntoIterator<Item = S>) {
        let mut kept = self.lock();
        let mut bytes: usize = kept.iter().map(Slot::heap_bytes).sum();
        for slot in slots {
            bytes += slot.heap_bytes();
            if bytes > KEPT_SLOT_BYTES {
                return;
            }
            kept.push(slot);
        }
    }

    /// A panic elsewhere while the lock was held leaves the list itself sound.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<S>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs `work` on every task into a slot, then `consume` on each task and its slot, in task order.
///
/// With a pool, workers run up to `IN_FLIGHT_PER_THREAD` tasks per thread ahead of the consumer, which takes
/// results as soon as the next one in order is ready: no batch barriers, so a slow chunk holds back only
/// the chunks behind it, and consuming (writing) overlaps coding throughout. The consumer is itself
/// a pool thread that codes chunks while it waits, so `-T N` means N busy threads, not N plus a writer.
/// Tasks start oldest first on every thread (`spawn_fifo`): the consumer's own thread would otherwise take
/// the newest, and then wait with nothing to do for the oldest. Slots are recycled within a call and kept in
/// `slots` between calls, so memory stays at the in-flight window. Without a pool, everything runs here, one
/// task after the other: the serial reference.
fn pipeline<T: Sync, S: Send + Slot>(
    pool: Option<&rayon::ThreadPool>,
    tasks: &[T],
    slots: &Slots<S>,
    work: impl Fn(&mut Scratch, &T, &mut S) -> Result<(), ErrorKind> + Sync,
    mut consume: impl FnMut(&T, &S) -> Result<(), ErrorKind> + Send,
) -> Result<(), ErrorKind> {
    let run = |task: &T, slot: &mut S| {
        SCRATCH.with(|scratch| work(&mut scratch.borrow_mut(), task, slot))
    };
    let Some(pool) = pool else {
        let mut slot = slots.take();
        for task in tasks {
            run(task, &mut slot)?;
            consume(task, &slot)?;
        }
        slots.give_back([slot]);
        return Ok(());
    };
    let window = pool.current_num_threads() * IN_FLIGHT_PER_THREAD;
    let (sender, receiver) =
        mpsc::channel::<(usize, S, std::thread::Result<Result<(), ErrorKind>>)>();
    let run = &run;
    pool.scope_fifo(move |scope| {
        let spawn = |index: usize, mut slot: S| {
            let sender = sender.clone();
            scope.spawn_fifo(move |_| {
                // A panic is caught and sent on like a result: the consumer, waiting for this task's result
                // while it holds a sender itself, would otherwise wait forever.
                let result =
                    std::panic::catch_unwind(AssertUnwindSafe(|| run(&tasks[index], &mut slot)));
                // The consumer stops listening only after an error; later results are not needed then.
                let _ = sender.send((index, slot, result));
            });
        };
        let mut spawned = tasks.len().min(window);
        (0..spawned).for_each(|index| spawn(index, slots.take()));
        let mut finished: BTreeMap<usize, S> = BTreeMap::new();
        let mut retired = Vec::new();
        let mut next = 0;
        while next < tasks.len() {
            let (index, slot, result) = next_result(&receiver);
            result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            finished.insert(index, slot);
            while let Some(slot) = finished.remove(&next) {
                consume(&tasks[next], &slot)?;
                next += 1;
                if spawned < tasks.len() {
                    spawn(spawned, slot);
                    spawned += 1;
                } else {
                    retired.push(slot);
                }
            }
        }
        slots.give_back(retired);
        Ok(())
    })
}

/// Waits for the next result from a worker, coding pending chunks on this thread meanwhile.
fn next_result<M>(receiver: &mpsc::Receiver<M>) -> M {
    loop {
        match receiver.try_recv() {
            Ok(message) => return message,
            Err(mpsc::TryRecvError::Empty) => {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::thread::yield_now();
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => unreachable!("the consumer holds a sender"),
        }
    }
}

/// Tasks each worker may run ahead of the consumer: with 4, the first idle thread was often waiting for the
/// window to move (two threads compressed MiniLM's BF16 file 1.76 times as fast as one, 1.81 with 8). Memory
/// in flight is this many chunks per thread.
const IN_FLIGHT_PER_THREAD: usize = 8;

/// A pool for `threads` workers, or `None` for the serial path.
///
/// Pools are kept for the life of the process, one per thread count, and handed out again: a pool's workers
/// keep their `SCRATCH` buffers, so a second file (a folder of shards, a K/V page after another) neither spawns
/// threads nor touches fresh pages. A new pool per call cost whisper's BF16 file a third of its two-thread
/// restore speed (2.9 GB/s against 4+ from kept pools, where one thread keeps its buffers anyway).
fn pool(threads: usize) -> Result<Option<Arc<rayon::ThreadPool>>, ErrorKind> {
    static POOLS: Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    if threads == 1 {
        return Ok(None);
    }
    // A panic elsewhere while the lock was held leaves the list itself sound.
    let mut pools = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(Some(Arc::clone(pool)));
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(std::io::Error::other)?,
    );
    pools.push((threads, Arc::clone(&pool)));
    Ok(Some(pool))
}

/// A chunk to code: which segment it belongs to and its byte range in the input.
struct ChunkTask {
    segment: usize,
    range: Range<usize>,
    layout: Layout,
}

/// A coded chunk waiting to be written.
#[derive(Default)]
struct CodedSlot {
    payload: Vec<u8>,
    xxh3: Checksum,
}
/// The slots of `compress`, kept between calls.
static CODED_SLOTS: Slots<CodedSlot> = Slots::new();

/// The slots of `decompress`, kept between calls.
static RESTORED_SLOTS: Slots<Vec<u8>> = Slots::new();

/// Codes `file` as `plan` describes into a container written to `out`. Returns the writer and the manifest.
///
/// Reads `file` front to back once and releases each chunk after coding it, so memory stays at the chunks in
/// flight whatever the file's size.
pub fn compress<S: Source + ?Sized, W: Write + Send>(
    file: &S,
    plan: &Plan,
    options: &CompressOptions,
    out: W,
) -> Result<(W, Manifest), ErrorKind> {
    let bytes = file.bytes();
    let pool = pool(options.threads)?;
    let tasks = chunk_tasks(plan, options.chunk_size);
    let mut writer = Writer::new(out)?;
    let mut segment_chunks: Vec<Vec<Chunk>> = vec![Vec::new(); plan.segments.len()];
    pipeline(
        pool.as_deref(),
        &tasks,
        &CODED_SLOTS,
        |scratch, task: &ChunkTask, slot: &mut CodedSlot| {
            let values = &bytes[task.range.clone()];
            slot.xxh3 = Checksum::of(values);
            encode_chunk(
                task.layout,
                values,
                options.preference,
                scratch,
                &mut slot.payload,
            );
            Ok(())
        },
        |task, slot| {
            let values = &bytes[task.range.clone()];
            let offset = writer.append(&slot.payload)?;
            segment_chunks[task.segment].push(Chunk {
                offset,
                stored: slot.payload.len() as u64,
                len: values.len() as u64,
                xxh3: slot.xxh3,
            });
            file.release(task.range.clone());
            options.progress.advance(values.len() as u64);
            Ok(())
        },
    )?;
    let segments = plan
        .segments
        .iter()
        .zip(segment_chunks)
        .map(|(planned, chunks)| {
            let mut segment = Segment::new(
                planned.kind,
                planned.range.clone(),
                &planned.layout.name(),
                chunks,
            );
            segment.route = Some(planned.route.clone());
            if let Some(tensor) = &planned.tensor {
                segment.name = Some(tensor.name.clone());
                segment.dtype = Some(tensor.dtype.clone());
                segment.shape = Some(tensor.shape.clone());
            }
            segment
        })
        .collect();
    let source = SourceFile {
        format: plan.format.name().to_owned(),
        len: bytes.len() as u64,
    };
    let manifest = Manifest::new(source, options.chunk_size as u64, segments);
    let out = writer.finish(&manifest)?;
    Ok((out, manifest))
}

/// Cuts every segment into chunks of at most `chunk_size` bytes, on value boundaries.
fn chunk_tasks(plan: &Plan, chunk_size: usize) -> Vec<ChunkTask> {
    let mut tasks = Vec::new();
    for (segment, planned) in plan.segments.iter().enumerate() {
        let step = planned
            .layout
            .chunk_len(chunk_size, tenzip_container::MAX_CHUNK_LEN as usize);
        let (start, end) = (planned.range.start as usize, planned.range.end as usize);
        tasks.extend((start..end).step_by(step).map(|chunk_start| ChunkTask {
            segment,
            range: chunk_start..(chunk_start + step).min(end),
            layout: planned.layout,
        }));
    }
    tasks
}

/// A chunk to decode: where it goes and how it was coded.
struct DecodeTask<'a> {
    segment: usize,
    index: usize,
    chunk: &'a Chunk,
    layout: Layout,
}

/// Decodes `container` into `out`, checking each chunk against its checksum before writing it. On error,
/// what was written to `out` must be discarded.
pub fn decompress<B: AsRef<[u8]> + Source, W: Write + Send>(
    container: &Container<B>,
    options: &DecompressOptions,
    mut out: W,
) -> Result<W, ErrorKind> {
    let manifest = container.manifest();
    let pool = pool(options.threads)?;
    let layouts = manifest
        .segments
        .iter()
        .map(segment_layout)
        .collect::<Result<Vec<_>, _>>()?;
    let tasks: Vec<DecodeTask> = manifest
        .segments
        .iter()
        .enumerate()
        .flat_map(|(segment, s)| {
            let layout = layouts[segment];
            s.chunks
                .iter()
                .enumerate()
                .map(move |(index, chunk)| DecodeTask {
                    segment,
                    index,
                    chunk,
                    layout,
                })
        })
        .collect();
    pipeline(
        pool.as_deref(),
        &tasks,
        &RESTORED_SLOTS,
        |scratch, task: &DecodeTask, slot: &mut Vec<u8>| {
            let segment = &manifest.segments[task.segment];
            slot.resize(task.chunk.len as usize, 0);
            decode_checked(container, segment, task.layout, task.index, slot, scratch)
        },
        |task, slot| {
            out.write_all(slot)?;
            let payload =
                task.chunk.offset as usize..(task.chunk.offset + task.chunk.stored) as usize;
            container.storage().release(payload);
            options.progress.advance(slot.len() as u64);
            Ok(())
        },
    )?;
    Ok(out)
}

/// Decodes the whole container into `out`, which must be exactly as long as the original file: every chunk
/// in parallel straight into place (no ordered copy), each checked against its checksum. The fastest restore
/// when the output fits in memory; on error, `out` holds garbage.
pub fn decompress_into<B: AsRef<[u8]> + Sync>(
    container: &Container<B>,
    options: &DecompressOptions,
    out: &mut [u8],
) -> Result<(), ErrorKind> {
    let manifest = container.manifest();
    if out.len() as u64 != manifest.source.len {
        return Err(ErrorKind::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "output buffer holds {} bytes, the file has {}",
                out.len(),
                manifest.source.len
            ),
        )));
    }
    let pool = pool(options.threads)?;
    // Cut `out` into one piece per chunk, in file order: the chunks tile the file (checked when opened).
    let mut pieces = Vec::new();
    let mut rest = &mut *out;
    for segment in &manifest.segments {
        let layout = segment_layout(segment)?;
        for (index, chunk) in segment.chunks.iter().enumerate() {
            let (piece, tail) = std::mem::take(&mut rest).split_at_mut(chunk.len as usize);
            pieces.push((segment, layout, index, piece));
            rest = tail;
        }
    }
    let decode = |(segment, layout, index, piece): &mut (&Segment, Layout, usize, &mut [u8])| {
        SCRATCH.with(|scratch| {
            decode_checked(
                container,
                segment,
                *layout,
                *index,
                piece,
                &mut scratch.borrow_mut(),
            )
        })
    };
    match &pool {
        // One chunk a split: with rayon's adaptive splitting two threads kept 1.5 cores busy on whisper's BF16
        // file (its slow per-channel chunks come first), 1.84 this way.
        Some(pool) => {
            pool.install(|| pieces.par_iter_mut().with_max_len(1).try_for_each(decode))?
        }
        None => pieces.iter_mut().try_for_each(decode)?,
    }
    options.progress.advance(out.len() as u64);
    Ok(())
}

/// The codec layout a segment names.
pub(crate) fn segment_layout(segment: &Segment) -> Result<Layout, ErrorKind> {
    segment
        .layout
        .parse()
        .map_err(|_| ErrorKind::UnknownLayout {
            segment: describe(segment),
            layout: segment.layout.clone(),
        })
}

/// Decodes chunk `index` of `segment` into `out` (exactly its original length) and checks its checksum.
pub(crate) fn decode_checked<B: AsRef<[u8]>>(
    container: &Container<B>,
    segment: &Segment,
    layout: Layout,
    index: usize,
    out: &mut [u8],
    scratch: &mut Scratch,
) -> Result<(), ErrorKind> {
    let chunk = &segment.chunks[index];
    decode_chunk(layout, container.payload(chunk), out, scratch).map_err(|cause| {
        ErrorKind::Codec {
            segment: describe(segment),
            chunk: index,
            cause,
        }
    })?;
    if Checksum::of(out) != chunk.xxh3 {
        return Err(ErrorKind::Checksum(format!(
            "chunk {index} of {}",
            describe(segment)
        )));
    }
    Ok(())
}

/// A segment as error messages name it.
pub(crate) fn describe(segment: &Segment) -> String {
    match &segment.name {
        Some(name) => format!("tensor {name:?}"),
        None => format!("{:?} segment at offset {}", segment.kind, segment.offset).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_task_panics_the_pipeline_instead_of_hanging_it() {
        let pool = pool(2).unwrap().expect("a pool of two threads");
        let tasks: Vec<usize> = (0..16).collect();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            pipeline(
                Some(&pool),
                &tasks,
                &Slots::new(),
                |_, &task, slot: &mut Vec<u8>| {
                    assert_ne!(task, 5, "task 5 fails");
                    *slot = vec![task as u8];
                    Ok(())
                },
                |_, _| Ok(()),
            )
        }));
        assert!(outcome.is_err());
    }

    #[test]
    fn kept_slots_stay_under_their_cap() {
        let slots: Slots<Vec<u8>> = Slots::new();
        slots.give_back((0..100).map(|_| Vec::with_capacity(1 << 20)));
        let kept: usize = slots.lock().iter().map(Slot::heap_bytes).sum();
        assert!(
            kept <= KEPT_SLOT_BYTES && kept + (1 << 20) > KEPT_SLOT_BYTES,
            "{kept}"
        );
        assert_eq!(slots.take().capacity(), 1 << 20);
    }
}
