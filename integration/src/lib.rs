//! Real-broker test support.
