//! Routes: which appended events produce outbox entries for which destination.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::event::EventData;
use crate::outbox::NewOutboxEntry;

type Predicate = Arc<dyn Fn(&str, &EventData) -> bool + Send + Sync>;

/// Which events a route takes. An empty filter takes every event; each condition set
/// narrows it (all must hold).
#[derive(Clone, Default)]
pub struct RouteFilter {
    event_types: Option<HashSet<String>>,
    stream_prefix: Option<String>,
    predicate: Option<Predicate>,
}

impl fmt::Debug for RouteFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteFilter")
            .field("event_types", &self.event_types)
            .field("stream_prefix", &self.stream_prefix)
            .field("predicate", &self.predicate.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

impl RouteFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only these event types.
    pub fn event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Only streams whose id starts with `prefix` (a category such as `order-`).
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefix = Some(prefix.into());
        self
    }

    /// Only events for which `predicate(stream_id, event)` is true.
    pub fn predicate(mut self, predicate: impl Fn(&str, &EventData) -> bool + Send + Sync + 'static) -> Self {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Whether the filter takes this event.
    pub fn matches(&self, stream_id: &str, event: &EventData) -> bool {
        self.event_types.as_ref().is_none_or(|t| t.contains(&event.event_type))
            && self
                .stream_prefix
                .as_ref()
                .is_none_or(|p| stream_id.starts_with(p.as_str()))
            && self.predicate.as_ref().is_none_or(|p| p(stream_id, event))
    }
}

/// A destination and the events it hears about.
#[derive(Debug, Clone)]
pub struct Route {
    /// Destination name.
    pub destination: String,
    /// Which events.
    pub filter: RouteFilter,
}

/// The store's routes.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// Adds a route.
    pub fn add(&mut self, destination: impl Into<String>, filter: RouteFilter) {
        self.routes.push(Route {
            destination: destination.into(),
            filter,
        });
    }

    /// The routes, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// Whether any route names this destination.
    pub fn knows(&self, destination: &str) -> bool {
        self.routes.iter().any(|r| r.destination == destination)
    }

    /// The outbox entries for events appended to `stream_id`, the first at `first_version`.
    /// Entries come out in event order, and for each event in route order.
    pub fn entries_for(
        &self,
        stream_id: &str,
        first_version: u64,
        events: &[EventData],
        partitions: u32,
    ) -> Vec<NewOutboxEntry> {
        let mut out = Vec::new();
        for (i, event) in events.iter().enumerate() {
            for route in &self.routes {
                if route.filter.matches(stream_id, event) {
                    out.push(NewOutboxEntry::for_event(
                        &route.destination,
                        stream_id,
                        first_version + i as u64,
                        event,
                        partitions,
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: &str) -> EventData {
        EventData::json(t, &serde_json::json!({})).unwrap()
    }

    #[test]
    fn filters_combine() {
        let f = RouteFilter::all().event_types(["A"]).stream_prefix("order-");
        assert!(f.matches("order-1", &ev("A")));
        assert!(!f.matches("order-1", &ev("B")));
        assert!(!f.matches("user-1", &ev("A")));
        let p = RouteFilter::all().predicate(|s, _| s.ends_with('7'));
        assert!(p.matches("x7", &ev("A")));
        assert!(!p.matches("x8", &ev("A")));
    }

    #[test]
    fn one_event_several_destinations() {
        let mut r = Routes::default();
        r.add("hook", RouteFilter::all());
        r.add("queue", RouteFilter::all().event_types(["A"]));
        let entries = r.entries_for("s", 3, &[ev("A"), ev("B")], 8);
        let got: Vec<_> = entries
            .iter()
            .map(|e| (e.destination.as_str(), e.stream_version))
            .collect();
        assert_eq!(got, vec![("hook", Some(3)), ("queue", Some(3)), ("hook", Some(4))]);
        assert_ne!(entries[0].id, entries[1].id);
    }
}
