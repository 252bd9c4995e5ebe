//! smm-notify's tests: everything talks to fakes on 127.0.0.1 only.

mod channels;
mod guard;
mod http;
mod signing;
mod support;
