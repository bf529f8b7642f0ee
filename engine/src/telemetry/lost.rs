//! CPU time the engine's threads lost to other work while they wanted to run: the kernel's
//! per-thread `run_delay` (the second field of `/proc/self/task/TID/schedstat`), sampled once
//! an interval by a watcher thread that sleeps in between.
//!
//! Why: on a shared VM the tail is mostly other tasks taking the engine's CPUs (a
//! `sched_switch` trace on 2026-12-05 showed the ingress preempted for up to 4 ms by kdamond
//! and RabbitMQ's schedulers). The noise probe measures that before and after a run; this
//! measures it during the run, per interval, on the engine's own threads, so each slow
//! interval of the timeline says how much of it the machine took.
//!
//! Owns the watcher and the thread ids it reads. Never runs on the ingress, a shard or
//! control: reading procfs is a file read, and those threads only store their id once.

use crate::runtime::ring::{self, Consumer, Producer};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A thread's id, set by the thread itself when it starts (0 until then).
#[derive(Default, Clone)]
pub struct Tid(Arc<AtomicI32>);

impl Tid {
    /// Records the calling thread's id.
    pub fn set_to_current(&self) {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
        self.0.store(tid, Ordering::Release);
    }

    fn get(&self) -> Option<i32> {
        Some(self.0.load(Ordering::Acquire)).filter(|&t| t > 0)
    }
}

/// One interval's loss: per watched thread (in the order given), ns spent runnable and not
/// running since the previous sample; then the hypervisor's steal over the CPUs watched, ns
/// (the vCPU itself descheduled: the guest's threads do not see that as waiting).
pub type Sample = Vec<u64>;

/// Nanoseconds of steal `cpus` have had so far, summed, from one read of `/proc/stat`
/// (10 ms resolution); `None` when a CPU has no line there.
pub fn steal_ns(cpus: &[usize]) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    // SAFETY: sysconf has no memory arguments.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut ticks = 0u64;
    for cpu in cpus {
        let name = format!("cpu{cpu}");
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        ticks += line.split_whitespace().nth(8)?.parse::<u64>().ok()?;
    }
    Some(ticks * 1_000_000_000 / hz)
}

/// Nanoseconds `tid` has waited runnable so far (`None`: no such thread, or no schedstat).
pub fn run_delay_ns(tid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Starts the watcher: every `every`, it samples each thread of `tids` and sends the deltas.
/// It ends when `stop` is set. Returns the receiving end for control.
pub fn watch(
    tids: Vec<Tid>,
    steal_cpus: Vec<usize>,
    every: Duration,
    cpu: usize,
    nice: i32,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(Consumer<Sample>, std::thread::JoinHandle<()>)> {
    let (mut tx, rx): (Producer<Sample>, _) = ring::ring(64);
    let h = std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            crate::runtime::pin(cpu);
            crate::runtime::set_nice(nice);
            let mut last: Vec<Option<u64>> = vec![None; tids.len()];
            let steal = || steal_ns(&steal_cpus).unwrap_or(0);
            let mut stolen = steal();
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(every);
                let mut sample: Sample = tids
                    .iter()
                    .zip(last.iter_mut())
                    .map(|(t, prev)| {
                        let now = t.get().and_then(run_delay_ns);
                        let d = match (now, *prev) {
                            (Some(n), Some(p)) => n.saturating_sub(p),
                            _ => 0,
                        };
                        *prev = now.or(*prev);
                        d
                    })
                    .collect();
                let s = steal();
                sample.push(s.saturating_sub(stolen));
                stolen = s;
                // Control is slow to take them: this interval's figures are dropped (the
                // next sample still counts from this one).
                let _ = tx.try_push(sample);
            }
        })?;
    Ok((rx, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_reads_its_own_run_delay() {
        let t = Tid::default();
        assert!(t.get().is_none());
        t.set_to_current();
        let tid = t.get().expect("set");
        assert!(run_delay_ns(tid).is_some(), "schedstat is readable here");
        assert!(run_delay_ns(i32::MAX).is_none());
    }

    #[test]
    fn steal_reads_for_a_cpu_this_machine_has() {
        assert!(steal_ns(&[0]).is_some());
        assert!(steal_ns(&[100_000]).is_none());
    }

    #[test]
    fn the_watcher_reports_every_thread_each_interval_and_stops() {
        let me = Tid::default();
        me.set_to_current();
        let stop = Arc::new(AtomicBool::new(false));
        let (mut rx, h) = watch(
            vec![me, Tid::default()],
            vec![0],
            Duration::from_millis(5),
            0,
            0,
            Arc::clone(&stop),
        )
        .unwrap();
        let first = loop {
            if let Some(s) = rx.try_pop() {
                break s;
            }
            std::thread::yield_now();
        };
        assert_eq!(first.len(), 3, "one figure per thread, then steal");
        assert_eq!(first[1], 0, "a thread that never started lost nothing");
        stop.store(true, Ordering::Release);
        h.join().unwrap();
    }
}
