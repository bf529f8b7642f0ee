//! The run's plan: which thread runs which roles on which CPU, at what priority and how it
//! waits, computed purely from the configuration (and which sinks and endpoint are on).
//!
//! The runtime launches exactly this plan and `tickcore config` prints it, so what an operator
//! reads is what runs. Roles that share a CPU share a thread where one of them is the feed
//! (ingress): two threads on one CPU preempt each other mid-batch at the scheduler's choice,
//! one thread takes turns between batches at ours. A thread that shares its CPU with the data
//! path and can wait (a sink, the admin endpoint) runs at a lower priority.
//!
//! Owns placement rules only: never starts a thread, never reads the machine.

use crate::config::Config;

/// A role of the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Reads the feed and batches it per shard.
    Ingress,
    /// Shard `i`: books, bars, per-core cache.
    Shard(usize),
    /// Takes every shard's event batches; feeds the sinks.
    Consumer,
    /// Histograms, budgets, the degrade ladder, snapshot requests.
    Control,
    /// The admin HTTP endpoint.
    Admin,
    /// The WebSocket gateway: takes events from the consumer, serves clients.
    Gateway,
    /// A storage adapter.
    Sink(String),
    /// Samples the CPU time the data path's threads lose to other tasks (`telemetry::lost`).
    Watch,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Ingress => write!(f, "ingress"),
            Role::Shard(i) => write!(f, "shard{i}"),
            Role::Consumer => write!(f, "consumer"),
            Role::Control => write!(f, "control"),
            Role::Admin => write!(f, "admin"),
            Role::Gateway => write!(f, "gateway"),
            Role::Sink(s) => write!(f, "sink:{s}"),
            Role::Watch => write!(f, "watch"),
        }
    }
}

/// How a thread waits when it has nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Spins: it has its CPU to itself, and a wake-up costs tens of microseconds.
    Spin,
    /// Spins, yields, then parks until woken: its CPU has other work.
    SpinThenPark,
    /// Sleeps on a timer or a socket: its work can wait.
    Sleep,
}

/// One thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadPlan {
    /// Thread name.
    pub name: String,
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// Roles it runs, the first the one it is named for; the others take turns inside it.
    pub roles: Vec<Role>,
    /// Its nice value (0: the data path's; higher yields the CPU to it).
    pub nice: i32,
    /// How it waits (for the ingress: whether it may park waiting for a free buffer).
    pub wait: Wait,
    /// Longest it keeps its CPU before it hands it back of its own accord, ns (0: as long as
    /// the scheduler lets it).
    pub turn_ns: u64,
}

/// Nice value of a thread that shares its CPU with the data path and can wait: the scheduler
/// gives the data path the CPU first (a sink's backlog waits in its queue and spool, never in
/// the rings).
pub const SHARED_NICE: i32 = 10;

/// The gateway's turn on a CPU of the data path. It runs there at full priority and hands the
/// CPU back after each turn of this length, rather than at nice 10.
/// - At nice 10 the gateway kept the CPU for a whole scheduler slice once it had it, while the
///   ingress waited: e2e p50 0.6-1.8 ms with 100 clients (`bench --ws-clients 100`, m7 at
///   1M/s, 2026-12-07).
/// - Turns at nice 10 starved it instead: the busy ingress is owed 90% of a shared CPU by
///   weight, so with 20 us turns the gateway fell behind (deliver p99 0.16-0.81 s, 14 clients
///   cut off in one run of three).
/// - At nice 0 with 50 us turns, in 6 pairs against nice 10: e2e p50 0.16-1.09 ms against
///   0.62-1.75 ms (better in 6 of 6), deliver p99 4.4-18 ms against 6.1-42 ms (better in 5).
///   20 us turns gave a lower e2e p50 but a higher deliver p50; 100 us, the reverse.
pub const GATEWAY_TURN_NS: u64 = 50_000;

/// The endpoints a run serves besides the feed path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// The admin HTTP endpoint (`--admin`).
    pub admin: bool,
    /// The WebSocket gateway (`--ws`).
    pub gateway: bool,
    /// A load this process runs outside the plan, and its CPU: `bench --ws-clients`'s clients,
    /// which stand for desks on other machines.
    pub load_cpu: Option<usize>,
}

/// Every thread of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// In start order.
    pub threads: Vec<ThreadPlan>,
}

impl Plan {
    /// The plan for `cfg`, with storage adapters `sinks` (by name) and the `endpoints` that are
    /// on.
    pub fn new(cfg: &Config, sinks: &[String], endpoints: Endpoints) -> Plan {
        let feed = cfg.feed_cpu.value;
        let consumer_cpu = cfg.adapter_cpus.value[0];
        let control_cpu = cfg.control_cpu.value;
        let n = cfg.shards.value;
        let runs_shard = |cpu: usize| (0..n).any(|i| cfg.shard_cpu(i) == cpu);
        let adapter_cpu = |k: usize| {
            let cpus = &cfg.adapter_cpus.value;
            cpus[(1 + k) % cpus.len()]
        };
        let mut ingress = vec![Role::Ingress];
        if consumer_cpu == feed {
            ingress.push(Role::Consumer);
        }
        if control_cpu == feed {
            ingress.push(Role::Control);
        }
        let gateway_cpu = cfg.gateway_cpus.value[0];
        // Spins unless a busy thread shares its CPU ([`park_where_shared`]).
        let mut threads = vec![ThreadPlan {
            name: "ingress".into(),
            cpu: feed,
            roles: ingress,
            nice: 0,
            wait: Wait::Spin,
            turn_ns: 0,
        }];
        for i in 0..n {
            threads.push(ThreadPlan {
                name: format!("shard{i}"),
                cpu: cfg.shard_cpu(i),
                roles: vec![Role::Shard(i)],
                nice: 0,
                wait: if cfg.cpu_is_dedicated_to_shard(i) {
                    Wait::Spin
                } else {
                    Wait::SpinThenPark
                },
                turn_ns: 0,
            });
        }
        if consumer_cpu != feed {
            threads.push(own(
                "consumer",
                consumer_cpu,
                Role::Consumer,
                Wait::SpinThenPark,
            ));
        }
        if control_cpu != feed {
            threads.push(own("control", control_cpu, Role::Control, Wait::Sleep));
        }
        let data_path = |cpu: usize| cpu == feed || runs_shard(cpu);
        // A thread that can wait sleeps, and yields the data path's CPUs to the data path.
        let sleeper = |name: &str, cpu: usize, role: Role| ThreadPlan {
            nice: if data_path(cpu) { SHARED_NICE } else { 0 },
            ..own(name, cpu, role, Wait::Sleep)
        };
        for (k, s) in sinks.iter().enumerate() {
            threads.push(sleeper(
                &format!("sink-{s}"),
                adapter_cpu(k),
                Role::Sink(s.clone()),
            ));
        }
        if endpoints.gateway {
            // Its clients' queues absorb a slow turn.
            let mut g = sleeper("gateway", gateway_cpu, Role::Gateway);
            if data_path(gateway_cpu) {
                (g.nice, g.turn_ns) = (0, GATEWAY_TURN_NS);
            }
            threads.push(g);
        }
        if endpoints.admin {
            threads.push(sleeper("admin", control_cpu, Role::Admin));
        }
        // Wakes once an interval for a few procfs reads, beside control.
        threads.push(sleeper("watch", control_cpu, Role::Watch));
        park_where_shared(&mut threads, endpoints.load_cpu);
        Plan { threads }
    }

    /// The thread that runs `role`.
    pub fn thread_of(&self, role: &Role) -> &ThreadPlan {
        self.thread_running(role)
            .expect("every role of a run is planned")
    }

    /// The thread that runs `role`, if the run has that role at all (a gateway, a sink).
    pub fn thread_running(&self, role: &Role) -> Option<&ThreadPlan> {
        self.threads.iter().find(|t| t.roles.contains(role))
    }

    /// The turn the consumer yields to a gateway that has fallen behind on the consumer's CPU
    /// (`gateway::intake::Turns`), ns: the gateway's own turn when the two share a CPU and it
    /// takes turns there, 0 otherwise (no gateway, or a CPU of its own).
    pub fn turns_owed_to_gateway(&self) -> u64 {
        match self.thread_running(&Role::Gateway) {
            Some(g) if g.cpu == self.thread_of(&Role::Consumer).cpu => g.turn_ns,
            _ => 0,
        }
    }

    /// Whether `role` takes its turns inside the ingress thread.
    pub fn on_ingress_thread(&self, role: &Role) -> bool {
        self.threads[0].roles.contains(role)
    }

    /// Role -> CPU, for the run's summary (the ingress keeps its old key, `feed`: the bench
    /// JSON's fields only ever get added).
    pub fn placement(&self) -> Vec<(String, usize)> {
        self.threads
            .iter()
            .flat_map(|t| t.roles.iter().map(|r| (r.to_string(), t.cpu)))
            .map(|(r, c)| (if r == "ingress" { "feed".into() } else { r }, c))
            .collect()
    }

    /// CPUs that run more than one thread, with their threads: where roles share a CPU,
    /// latency suffers (results do not).
    pub fn shared_cpus(&self) -> Vec<(usize, Vec<String>)> {
        let mut by_cpu: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
        for t in &self.threads {
            by_cpu.entry(t.cpu).or_default().push(t.name.clone());
        }
        by_cpu.into_iter().filter(|(_, t)| t.len() > 1).collect()
    }

    /// One line per thread, as `tickcore config` and `run --json` show it.
    pub fn lines(&self) -> Vec<String> {
        self.threads
            .iter()
            .map(|t| {
                let roles: Vec<String> = t.roles.iter().map(Role::to_string).collect();
                let wait = match t.wait {
                    Wait::Spin => "spins",
                    Wait::SpinThenPark => "spins then parks",
                    Wait::Sleep => "sleeps",
                };
                let turns = match t.turn_ns {
                    0 => String::new(),
                    ns => format!(", yields every {} us", ns / 1000),
                };
                format!(
                    "thread {:<12} CPU {:<3} nice {:<3} {wait:<17} runs {}{turns}",
                    t.name,
                    t.cpu,
                    t.nice,
                    roles.join(" + ")
                )
            })
            .collect()
    }
}

/// A thread spins only with its CPU to itself: beside another thread that needs the CPU for
/// long (a shard, a sink, the gateway) or beside the bench's load, it parks when idle. The
/// admin endpoint and the watch do not count: they sleep on a socket or a timer, and when they
/// wake the scheduler gives them the CPU within the spinning thread's slice (the ingress's
/// short waits no longer yield it: a system call there slowed the next batch's hop). A shard
/// that spun beside 50 bench clients left them its CPU's scraps: the gateway delivered 1.2-1.6
/// M frames/s with 3-19 clients cut off; parking, 1.74-1.79 M and none (`bench --scope m7
/// --rate 1M --ws-clients 50`, 2 runs each, 2026-12-06).
fn park_where_shared(threads: &mut [ThreadPlan], load_cpu: Option<usize>) {
    let busy = |r: &Role| matches!(r, Role::Shard(_) | Role::Sink(_) | Role::Gateway);
    let busy_cpus: Vec<usize> = threads
        .iter()
        .filter(|t| t.roles.iter().any(busy))
        .map(|t| t.cpu)
        .chain(load_cpu)
        .collect();
    for t in threads.iter_mut().filter(|t| t.wait == Wait::Spin) {
        let mine = usize::from(t.roles.iter().any(busy));
        if busy_cpus.iter().filter(|&&c| c == t.cpu).count() > mine {
            t.wait = Wait::SpinThenPark;
        }
    }
}

fn own(name: &str, cpu: usize, role: Role, wait: Wait) -> ThreadPlan {
    ThreadPlan {
        name: name.into(),
        cpu,
        roles: vec![role],
        nice: 0,
        wait,
        turn_ns: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn cfg(cpus: usize, o: Overrides) -> Config {
        Config::load(None, |_| None, &o, cpus).expect("valid configuration")
    }

    const ADMIN: Endpoints = Endpoints {
        admin: true,
        gateway: false,
        load_cpu: None,
    };

    fn sinks(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_default_on_two_cpus_keeps_the_ingress_thread_for_consumer_and_control() {
        let p = Plan::new(&cfg(2, Overrides::default()), &[], ADMIN);
        let t = &p.threads;
        assert_eq!(t[0].roles, [Role::Ingress, Role::Consumer, Role::Control]);
        assert_eq!((t[0].cpu, t[0].wait), (0, Wait::Spin));
        assert_eq!(
            (t[1].name.as_str(), t[1].cpu, t[1].wait),
            ("shard0", 1, Wait::Spin)
        );
        assert_eq!(
            (t[2].name.as_str(), t[2].cpu, t[2].nice),
            ("admin", 0, SHARED_NICE)
        );
        assert_eq!((t[3].name.as_str(), t[3].wait), ("watch", Wait::Sleep));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn sinks_on_the_data_paths_cpus_run_at_a_lower_priority() {
        let p = Plan::new(
            &cfg(2, Overrides::default()),
            &sinks(&["pg", "redis"]),
            Endpoints::default(),
        );
        let pg = p.thread_of(&Role::Sink("pg".into()));
        assert_eq!((pg.cpu, pg.nice, pg.wait), (0, SHARED_NICE, Wait::Sleep));
        assert_eq!(p.threads[0].wait, Wait::SpinThenPark);
    }

    #[test]
    fn a_single_cpu_machine_puts_everything_on_cpu_0_and_nothing_spins() {
        let p = Plan::new(&cfg(1, Overrides::default()), &sinks(&["pg"]), ADMIN);
        assert!(p.threads.iter().all(|t| t.cpu == 0));
        assert!(
            p.threads.iter().all(|t| t.wait != Wait::Spin),
            "{:?}",
            p.lines()
        );
    }

    #[test]
    fn a_large_machine_gives_every_role_its_own_cpu() {
        let o = Overrides {
            feed_cpu: Some(0),
            shard_cpus: Some(vec![2, 3, 4, 5]),
            adapter_cpus: Some(vec![6, 7, 8]),
            control_cpu: Some(1),
            ..Default::default()
        };
        let p = Plan::new(&cfg(16, o), &sinks(&["pg", "redis", "neo4j"]), ADMIN);
        assert_eq!(p.threads[0].roles, [Role::Ingress]);
        assert_eq!(p.threads[0].wait, Wait::Spin);
        for i in 0..4 {
            let s = p.thread_of(&Role::Shard(i));
            assert_eq!((s.cpu, s.wait), (2 + i, Wait::Spin));
        }
        assert_eq!(p.thread_of(&Role::Consumer).cpu, 6);
        assert_eq!(p.thread_of(&Role::Control).cpu, 1);
        let cpus: Vec<usize> = ["pg", "redis", "neo4j"]
            .iter()
            .map(|s| p.thread_of(&Role::Sink(s.to_string())).cpu)
            .collect();
        assert_eq!(
            cpus,
            [7, 8, 6],
            "after the consumer, round the adapter CPUs"
        );
        assert!(
            p.threads.iter().all(|t| t.nice == 0),
            "no one shares the data path's CPUs"
        );
        assert_eq!(p.thread_of(&Role::Admin).cpu, 1, "beside control");
    }

    #[test]
    fn the_gateway_beside_the_feed_takes_turns_and_the_ingress_parks() {
        let on = Endpoints {
            gateway: true,
            ..Default::default()
        };
        let p = Plan::new(&cfg(2, Overrides::default()), &[], on);
        let g = p.thread_of(&Role::Gateway);
        assert_eq!(
            (g.cpu, g.nice, g.wait, g.turn_ns),
            (0, 0, Wait::Sleep, GATEWAY_TURN_NS),
            "beside the feed: full priority, in turns"
        );
        assert_eq!(p.threads[0].wait, Wait::SpinThenPark);
        assert_eq!(
            p.turns_owed_to_gateway(),
            GATEWAY_TURN_NS,
            "the consumer beside it yields it turns when it falls behind"
        );
        let o = Overrides {
            gateway_cpus: Some(vec![3]),
            ..Default::default()
        };
        let p = Plan::new(&cfg(4, o), &[], on);
        let g = p.thread_of(&Role::Gateway);
        assert_eq!(
            (g.cpu, g.nice, g.turn_ns),
            (3, 0, 0),
            "a CPU of its own: full priority, no turns"
        );
        assert_eq!(p.threads[0].wait, Wait::Spin);
        assert_eq!(
            p.turns_owed_to_gateway(),
            0,
            "none owed on a CPU of its own"
        );
        let p = Plan::new(&cfg(2, Overrides::default()), &[], Endpoints::default());
        assert_eq!(p.turns_owed_to_gateway(), 0, "no gateway, no turns");
    }

    #[test]
    fn two_shards_on_one_cpu_park_when_idle() {
        let o = Overrides {
            shards: Some(2),
            shard_cpus: Some(vec![1]),
            ..Default::default()
        };
        let p = Plan::new(&cfg(2, o), &[], Endpoints::default());
        assert!(p.threads[1..3].iter().all(|t| t.wait == Wait::SpinThenPark));
    }

    #[rstest::rstest]
    #[case::alone(None, None, Wait::Spin)]
    #[case::beside_the_gateway(Some(1), None, Wait::SpinThenPark)]
    #[case::beside_the_bench_clients(None, Some(1), Wait::SpinThenPark)]
    #[case::the_bench_clients_elsewhere(None, Some(0), Wait::Spin)]
    fn a_shard_spins_only_with_its_cpu_to_itself(
        #[case] gateway_cpu: Option<usize>,
        #[case] load_cpu: Option<usize>,
        #[case] wait: Wait,
    ) {
        let o = Overrides {
            gateway_cpus: gateway_cpu.map(|c| vec![c]),
            ..Default::default()
        };
        let on = Endpoints {
            gateway: gateway_cpu.is_some(),
            load_cpu,
            ..Default::default()
        };
        let p = Plan::new(&cfg(2, o), &[], on);
        assert_eq!(p.thread_of(&Role::Shard(0)).wait, wait);
    }
}
