//! The SMM panel "API v2" on the wire, with no I/O.
//!
//! Thousands of SMM panels speak one protocol: `POST /api/v2` with the form fields `key` and
//! `action`, JSON replies, and errors as HTTP 200 `{"error": "..."}`. This crate holds everything
//! about that protocol that does not need a socket:
//!
//! * [`params`]: the request parameters, parsed identically from a form body, a multipart body, a
//!   query string or a JSON body;
//! * [`request`]: the downstream request (`key`, [`request::Action`] and the action's arguments);
//! * [`order`]: every `add` variant of the protocol as a typed, validated value, with the exact
//!   parameter names it is forwarded upstream with;
//! * [`response`]: downstream replies, serialised in the canonical typing of the panels' own docs;
//! * [`error`]: the error kinds with their canonical English texts (clients string-match them);
//! * [`status`]: order and refill status vocabularies and their normalisation;
//! * [`upstream`]: tolerant parsing of what real upstream panels reply.

pub mod error;
pub mod money;
pub mod order;
pub mod params;
pub mod request;
pub mod response;
pub mod status;
pub mod upstream;

pub use error::ErrorKind;
pub use money::Money;
pub use order::{OrderRequest, ServiceType};
pub use params::Params;
pub use request::{Action, ApiRequest, IdList, Target};
pub use status::{OrderStatus, RefillStatus, StatusCodes};
pub use upstream::{ReplyError, UpstreamId};

/// Most ids one multi-id call (`orders`, `refills`) may carry, downstream and upstream.
pub const MAX_IDS: usize = 100;
