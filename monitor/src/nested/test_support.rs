//! Fixtures shared by the nested tests.
