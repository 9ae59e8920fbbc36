//! The conformance suite on the in-memory reference backend: checks the suite and the
//! core relay without a database.

eskit_testkit::conformance_tests!(eskit_testkit::memory::MemoryHarness);
