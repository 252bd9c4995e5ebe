//! `/customers`: the list with balances, creating one (the key shown once), a customer's page
//! with the ledger, credit and debit with a reason, suspend and activate.

use askama::Template;
use axum::extract::Path;
use axum::response::Response;
use serde::Deserialize;
use smm_store::{AdminRole, CustomerStatus};

use super::session::{Change, CsrfForm, Session, see_other};
use super::view::{Chrome, ConsoleError, PageResult, render, time};
use crate::ops::{CustomerView, LedgerView, WithKey};

#[derive(Template)]
#[template(path = "console/customers.html")]
struct ListPage {
    chrome: Chrome,
    customers: Vec<CustomerView>,
    currency: String,
}

pub async fn list(session: Session) -> PageResult {
    let ops = session.ops();
    let customers = ops.get().list_customers().await?;
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
}

/// Shows the new key on the answer to the POST itself: it is never stored, so never shown again.
pub async fn create(change: Change<CreateForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "create customers")?;
    let ops = session.ops();
    let created = match ops.get().create_customer(&change.form.name, None).await {
        Ok(created) => created,
        Err(error) => return Ok(see_other("/customers", Err(error.to_string()))),
    };
    let page = CreatedPage {
        chrome: Chrome::new(session, "customers"),
        created,
    };
    Ok(render(&page, session))
}

#[derive(Template)]
#[template(path = "console/customer.html")]
struct ShowPage {
    chrome: Chrome,
    customer: CustomerView,
    ledger: Vec<(LedgerView, String)>,
    created: String,
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
    Ok(back_to(id, result))
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
    Ok(back_to(id, result))
}

fn back_to(id: i64, result: Result<String, String>) -> Response {
    see_other(&format!("/customers/{id}"), result)
}
