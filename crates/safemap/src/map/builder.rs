use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;
use std::time::Duration;

use super::SafeMap;
use crate::engine::{ReadCounters, Table};
use crate::error::BuildError;
use crate::guard::{Breaker, DenyRules};
use crate::journal::{DEFAULT_RETENTION, Journal};
use crate::plan::PlanBook;
use crate::refs::{Declared, Linked, MapRefs, OnDelete};
use crate::stats::WriteCounters;
use crate::sync::Mutex;

/// How long a plan stays executable by default: one hour.
pub const DEFAULT_PLAN_TTL: Duration = Duration::from_secs(3600);

enum JournalChoice<K, V> {
    Own,
    Shared(Journal<K, V>),
    Off,
}

/// Configures a [`SafeMap`]: its guards, journal and limits.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use safemap::SafeMap;
///
/// let orders: SafeMap<String, &str> = SafeMap::builder()
///     .name("orders")
///     .deny_delete("archived", |_key, status: &&str| *status == "archived")
///     .delete_breaker(100, Duration::from_secs(60))
///     .retain_deleted_for(Duration::from_secs(7 * 24 * 3600))
///     .build();
/// # let _ = orders;
/// ```
pub struct Builder<K, V, S = RandomState> {
    name: Arc<str>,
    /// Whether `name` was set (else the map has an identity of its own in a
    /// shared journal, whatever other maps are called).
    named: bool,
    record_puts: bool,
    hasher: S,
    capacity: usize,
    journal: JournalChoice<K, V>,
    deny: DenyRules<K, V>,
    breaker: Option<(usize, Duration)>,
    retention: Duration,
    plan_ttl: Duration,
    references: Vec<Declared<K, V>>,
}

impl<K, V> Builder<K, V, RandomState> {
    pub(crate) fn new() -> Self {
        Builder {
            name: Arc::from("default"),
            named: false,
            record_puts: false,
            hasher: RandomState::new(),
            capacity: 0,
            journal: JournalChoice::Own,
            deny: DenyRules::new(),
            breaker: None,
            retention: DEFAULT_RETENTION,
            plan_ttl: DEFAULT_PLAN_TTL,
            references: Vec::new(),
        }
    }
}

impl<K, V, S> Builder<K, V, S> {
    /// The map's name, written into its audit records (default `"default"`).
    ///
    /// On a shared journal the name is the map's identity: records (restore,
    /// watch) belong to the live map of that name, including records loaded
    /// from storage. Give each map of a journal its own name; a map left with
    /// the default name is told apart from every other map by identity.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self.named = true;
        self
    }

    /// The hasher (default std's SipHash `RandomState`, safe for keys from the
    /// network; a faster one such as foldhash suits trusted keys).
    pub fn hasher<S2>(self, hasher: S2) -> Builder<K, V, S2> {
        Builder {
            name: self.name,
            named: self.named,
            record_puts: self.record_puts,
            hasher,
            capacity: self.capacity,
            journal: self.journal,
            deny: self.deny,
            breaker: self.breaker,
            retention: self.retention,
            plan_ttl: self.plan_ttl,
            references: self.references,
        }
    }

    /// Room for this many entries before the first resize.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Attaches the map to a shared journal: maps sharing one journal share its
    /// revision counter, its audit ids and its record order.
    pub fn journal(mut self, journal: Journal<K, V>) -> Self {
        self.journal = JournalChoice::Shared(journal);
        self
    }

    /// Records every put with its value in the map's own journal, watched or
    /// not (default off: removals and restores are always recorded, puts only
    /// while a watcher is registered). See [`JournalBuilder::record_puts`](crate::JournalBuilder::record_puts);
    /// a shared journal has its own setting.
    pub fn record_puts(mut self, record_puts: bool) -> Self {
        self.record_puts = record_puts;
        self
    }

    /// Keeps no audit records: revisions are still assigned, but restore and
    /// watch answer `JournalDisabled`. For maps whose writes need no audit.
    pub fn without_journal(mut self) -> Self {
        self.journal = JournalChoice::Off;
        self
    }

    /// Refuses to remove any entry for which `rule` is true, naming `name`.
    pub fn deny_delete(
        mut self,
        name: impl Into<String>,
        rule: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.deny.add(name.into(), Box::new(rule));
        self
    }

    /// Allows at most `max` successful single-key removals per sliding `window`.
    pub fn delete_breaker(mut self, max: usize, window: Duration) -> Self {
        self.breaker = Some((max, window));
        self
    }

    /// How long removed values can be restored (default 7 days). A map with its
    /// own journal also evicts records after this long.
    pub fn retain_deleted_for(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long a plan stays executable (default one hour).
    pub fn plan_ttl(mut self, ttl: Duration) -> Self {
        self.plan_ttl = ttl;
        self
    }

    /// Declares a reference: a value `v` of this map refers to key
    /// `extract(v)` of the map named `to` on the same journal (this map
    /// included); `None` refers to nothing. Puts whose target is missing are
    /// refused, removals of a referred-to key are refused, and cascading plans
    /// follow `on_delete`. `name` is unique within the map.
    ///
    /// Maps that take part in references (declaring them or referred to) are
    /// built with [`Builder::build_shared`], which registers them on the
    /// journal by name; references resolve to registered maps only.
    ///
    /// # Examples
    ///
    /// ```
    /// use safemap::{DeleteError, Journal, OnDelete, PutError, Reason, SafeMap};
    /// let journal: Journal<String, (String, u32)> = Journal::new();
    /// let orders = SafeMap::builder().name("orders").journal(journal.clone())
    ///     .build_shared().unwrap();
    /// let items = SafeMap::builder().name("items").journal(journal.clone())
    ///     .references("order", "orders", OnDelete::Cascade, |v: &(String, u32)| Some(v.0.clone()))
    ///     .build_shared().unwrap();
    /// assert!(matches!(
    ///     items.put("i-1".into(), ("o-1".into(), 2), safemap::Expect::Any, &Reason::none()),
    ///     Err(PutError::ReferenceMissing { .. })
    /// ));
    /// let _ = orders.insert("o-1".into(), (String::new(), 0));
    /// let _ = items.insert("i-1".into(), ("o-1".into(), 2));
    /// assert!(matches!(orders.remove("o-1", "cleanup"), Err(DeleteError::Referenced { count: 1, .. })));
    /// assert_eq!(orders.referrers(&"o-1".to_string(), None, 10)[0].key, "i-1");
    /// ```
    pub fn references(
        mut self,
        name: impl Into<Arc<str>>,
        to: impl Into<Arc<str>>,
        on_delete: OnDelete,
        extract: impl Fn(&V) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        self.references.push(Declared {
            name: name.into(),
            to: to.into(),
            on_delete,
            extract: Box::new(extract),
        });
        self
    }

    /// Builds the map in an `Arc` and registers it on its journal under its
    /// name, so that maps of the journal can refer to it and cascade through
    /// it (see [`Builder::references`]).
    ///
    /// # Errors
    ///
    /// [`BuildError::Unnamed`] without [`Builder::name`],
    /// [`BuildError::DuplicateReference`] for two references of one name,
    /// [`BuildError::DuplicateMap`] when a live map of the journal has the name.
    pub fn build_shared(self) -> Result<Arc<SafeMap<K, V, S>>, BuildError>
    where
        K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        S: BuildHasher + Send + Sync + 'static,
    {
        if !self.named {
            return Err(BuildError::Unnamed);
        }
        for (i, d) in self.references.iter().enumerate() {
            if self.references[..i].iter().any(|e| e.name == d.name) {
                return Err(BuildError::DuplicateReference {
                    name: d.name.to_string(),
                });
            }
        }
        let map = Arc::new(self.build());
        let link: Arc<dyn Linked<K, V>> = map.clone();
        if !map
            .journal
            .refs()
            .register(Arc::downgrade(&link), &map.name)
        {
            return Err(BuildError::DuplicateMap {
                name: map.name.to_string(),
            });
        }
        Ok(map)
    }

    /// Builds the map.
    pub fn build(self) -> SafeMap<K, V, S>
    where
        K: Hash + Eq,
        S: BuildHasher,
    {
        let journal = match self.journal {
            JournalChoice::Own => Journal::builder()
                .retention(self.retention)
                .record_puts(self.record_puts)
                .build(),
            JournalChoice::Shared(journal) => journal,
            JournalChoice::Off => Journal::builder().recording(false).build(),
        };
        let name = journal.attach(&self.name, self.named);
        SafeMap {
            table: Table::new(self.capacity, self.hasher),
            name,
            journal,
            deny: self.deny,
            breaker: self.breaker.map(|(max, window)| Breaker::new(max, window)),
            retention: self.retention,
            plan_ttl: self.plan_ttl,
            plans: Mutex::new(PlanBook::new()),
            reads: ReadCounters::new(),
            writes: WriteCounters::default(),
            refs: MapRefs::new(self.references),
        }
    }
}
