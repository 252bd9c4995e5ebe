//! `/customers`: the list with balances, creating one (the key shown once), a customer's page
//! with the ledger, credit and debit with a reason, suspend and activate. The page's Webhook
//! section and its changes are in `webhooks`.

use askama::Template;
use axum::extract::Path;
use axum::response::Response;
use serde::Deserialize;
use smm_store::{AdminRole, CustomerStatus};

use super::session::{Change, CsrfForm, CsrfOnly, Session};
use super::view::{Chrome, ConsoleError, PageResult, render, time};
use super::webhooks;
use crate::ops::{CustomerView, LedgerView, PricingView, WithKey};

#[derive(Template)]
#[template(path = "console/customers.html")]
struct ListPage {
    chrome: Chrome,
    customers: Vec<(CustomerView, i64, smm_wire::Money)>,
    currency: String,
}

pub async fn list(session: Session) -> PageResult {
    let ops = session.ops();
    let totals = ops.get().customer_totals().await?;
    let customers = ops
        .get()
        .list_customers()
        .await?
        .into_iter()
        .map(|c| {
            let (orders, spent) = totals
                .get(&c.id)
                .map_or((0, smm_wire::Money::ZERO), |t| (t.orders, t.spent));
            (c, orders, spent)
        })
        .collect();
    let page = ListPage {
        chrome: Chrome::new(&session, "customers"),
        customers,
        currency: session.app().settings().server.currency.clone(),
    };
    Ok(render(&page, &session))
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

impl CsrfForm for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Template)]
#[template(path = "console/customer_created.html")]
struct CreatedPage {
    chrome: Chrome,
    created: WithKey,
    heading: String,
}

/// Shows the new key on the answer to the POST itself: it is never stored, so never shown again.
pub async fn create(change: Change<CreateForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "create customers")?;
    let ops = session.ops();
    let created = match ops.get().create_customer(&change.form.name, None).await {
        Ok(created) => created,
        Err(error) => return Ok(session.see_other("/customers", Err(error.to_string()))),
    };
    let page = CreatedPage {
        chrome: Chrome::new(session, "customers"),
        heading: format!("Customer {} created", created.customer.name),
        created,
    };
    Ok(render(&page, session))
}

#[derive(Template)]
#[template(path = "console/customer.html")]
struct ShowPage {
    chrome: Chrome,
    pricing: PricingView,
    customer: CustomerView,
    ledger: Vec<(LedgerView, String)>,
    created: String,
    webhook: webhooks::Section,
}

pub async fn show(session: Session, Path(id): Path<i64>) -> PageResult {
    let ops = session.ops();
    let customer = ops.get().customer(id).await?;
    let ledger = ops
        .get()
        .ledger(id, None, 200)
        .await?
        .into_iter()
        .map(|e| {
            let at = time(e.created_at);
            (e, at)
        })
        .collect();
    let page = ShowPage {
        chrome: Chrome::new(&session, "customers"),
        pricing: ops.get().pricing(id).await?,
        webhook: webhooks::section(&ops.get(), id).await?,
        created: time(customer.created_at),
        customer,
        ledger,
    };
    Ok(render(&page, &session))
}

#[derive(Debug, Deserialize)]
pub struct BalanceForm {
    #[serde(default)]
    csrf: String,
    /// `credit` or `debit`.
    #[serde(default)]
    direction: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
}

impl CsrfForm for BalanceForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn balance(Path(id): Path<i64>, change: Change<BalanceForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "credit or debit balances")?;
    let form = &change.form;
    let credit = match form.direction.as_str() {
        "credit" => true,
        "debit" => false,
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "direction must be credit or debit, not {other:?}"
            )));
        }
    };
    let ops = session.ops();
    let result = ops
        .get()
        .change_balance(id, credit, &form.amount, &form.reason)
        .await
        .map(|entry| {
            format!(
                "{} {}; balance now {}",
                if credit { "Credited" } else { "Debited" },
                entry.amount.trim_start_matches('-'),
                entry.balance_after
            )
        })
        .map_err(|e| e.to_string());
    Ok(back_to(session, id, result))
}

#[derive(Debug, Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    status: String,
}

impl CsrfForm for StatusForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn status(Path(id): Path<i64>, change: Change<StatusForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "suspend or activate customers")?;
    let status = CustomerStatus::parse(&change.form.status)
        .ok_or_else(|| ConsoleError::BadRequest("status must be active or suspended".into()))?;
    let ops = session.ops();
    let result = ops
        .get()
        .set_status(id, status)
        .await
        .map(|c| format!("Customer {} is now {}", c.name, c.status))
        .map_err(|e| e.to_string());
    // This process sees it at once; other instances as the store announces it.
    session.app().invalidate_keys();
    Ok(back_to(session, id, result))
}

fn back_to(session: &Session, id: i64, result: Result<String, String>) -> Response {
    session.see_other(&format!("/customers/{id}"), result)
}

/// A new key, shown once on the answer to the POST; the old one stops working.
pub async fn rotate_key(Path(id): Path<i64>, change: Change<CsrfOnly>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "rotate keys")?;
    let ops = session.ops();
    let rotated = ops.get().rotate_key(id).await;
    session.app().invalidate_keys();
    let created = match rotated {
        Ok(rotated) => rotated,
        Err(error) => return Ok(back_to(session, id, Err(error.to_string()))),
    };
    let page = CreatedPage {
        chrome: Chrome::new(session, "customers"),
        heading: format!("New key for {}", created.customer.name),
        created,
    };
    Ok(render(&page, session))
}

#[derive(Debug, Deserialize)]
pub struct PricingForm {
    #[serde(default)]
    csrf: String,
    /// A percent; empty removes the discount.
    #[serde(default)]
    discount: Option<String>,
    /// With `rate`: the customer's own rate for this service; an empty rate removes it.
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    rate: Option<String>,
}

impl CsrfForm for PricingForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn blank_is_none(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// The discount (`discount`), or one service's custom rate (`service` and `rate`).
pub async fn pricing(Path(id): Path<i64>, change: Change<PricingForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "change customer prices")?;
    let form = &change.form;
    let ops = session.ops();
    let result = match &form.service {
        Some(service) => match service.trim().parse::<i64>() {
            Ok(service) => ops
                .get()
                .set_rate(id, service, blank_is_none(form.rate.as_deref()))
                .await
                .map(|_| format!("Rate for service {service} saved")),
            Err(_) => Err(crate::ops::OpError::Invalid(
                "service must be a service id".into(),
            )),
        },
        None => ops
            .get()
            .set_discount(id, blank_is_none(form.discount.as_deref()))
            .await
            .map(|p| match p.discount {
                Some(d) => format!("Discount set to {d} %"),
                None => "Discount removed".to_owned(),
            }),
    }
    .map_err(|e| e.to_string());
    session.app().invalidate_keys();
    Ok(back_to(session, id, result))
}
