//! The answers the Thulium simulator can give where the public pages leave a choice open
//! (`docs/compatibility.md`, section Thulium). The default is the most faithful reading;
//! every other value is a shape a real system may plausibly answer, so the contract tests
//! can prove the client survives each.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::validate::Agent;

/// The page size of the `capped` dialect.
pub const CAP: usize = 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dialect {
    /// How `GET agents` holds its records.
    pub list_shape: ListShape,
    /// How `GET agents` takes `limit` and `offset`.
    pub paging: Paging,
    /// The JSON type of `number` in the list and in GET one.
    pub number: Typing,
    /// The JSON type of `agent_id` in the list and in GET one.
    pub agent_id: Typing,
    /// How `active` is written.
    pub active: Flag,
    /// The HTTP status of a create refused only because the login or number is taken
    /// (400 is the documented status of every validation error; 409 and 422 are what
    /// other REST back-ends answer).
    pub duplicate_status: u16,
    /// The create answer.
    pub create_answer: CreateAnswer,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            list_shape: ListShape::Wrapped,
            paging: Paging::Paged,
            number: Typing::Integer,
            agent_id: Typing::Integer,
            active: Flag::Boolean,
            duplicate_status: 400,
            create_answer: CreateAnswer::Current,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListShape {
    /// A JSON array, as `agents_work_report` and `outbounds/:id/agents` answer.
    Bare,
    /// `{"count": <total>, "result": [...]}`, as `tickets` answers.
    Wrapped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Paging {
    /// `limit` (default and maximum 100; above is a 400) and `offset`, as
    /// `agents_work_report` documents.
    Paged,
    /// Both ignored: every agent in one answer.
    Unpaged,
    /// `offset` honoured, pages cut at [`CAP`] whatever `limit` asks.
    Capped,
    /// `limit` honoured, `offset` ignored: only the first page can ever be read.
    OffsetIgnored,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Typing {
    /// A JSON number, as GET one documents.
    Integer,
    /// A JSON string, as the create answer and `outbounds/:id/agents` document.
    String,
    /// Numbers and strings by turns, record by record.
    Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// `true`/`false`, as documented.
    Boolean,
    /// `1`/`0`.
    Integer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreateAnswer {
    /// `{"agent_id": "11", "agent_login": "jkowalski"}` (the page since 2024).
    Current,
    /// `{"agent_id": "11"}` (the page of 2017).
    Legacy,
}

impl Typing {
    fn render(self, n: u64) -> Value {
        match self {
            Typing::Integer => json!(n),
            Typing::String => json!(n.to_string()),
            Typing::Mixed if n.is_multiple_of(2) => json!(n.to_string()),
            Typing::Mixed => json!(n),
        }
    }
}

impl Dialect {
    /// An agent as `GET agents` and `GET agents/:login` show it.
    pub(super) fn agent(&self, agent: &Agent) -> Value {
        let mut v = agent.public();
        if let Value::Object(m) = &mut v {
            m.insert("agent_id".into(), self.agent_id.render(agent.agent_id));
            // Mixed turns on the agent id, so one agent keeps its type across pages.
            let number = match self.number {
                Typing::Mixed if agent.agent_id.is_multiple_of(2) => json!(agent.number.to_string()),
                Typing::Mixed => json!(agent.number),
                other => other.render(agent.number),
            };
            m.insert("number".into(), number);
            if self.active == Flag::Integer {
                m.insert("active".into(), json!(u8::from(agent.active)));
            }
        }
        v
    }

    /// A page of the list, `total` being every agent.
    pub(super) fn list(&self, page: Vec<Value>, total: usize) -> Value {
        match self.list_shape {
            ListShape::Bare => Value::Array(page),
            ListShape::Wrapped => json!({"count": total, "result": page}),
        }
    }

    /// The create answer.
    pub(super) fn created(&self, agent: &Agent) -> Value {
        match self.create_answer {
            CreateAnswer::Current => {
                json!({"agent_id": agent.agent_id.to_string(), "agent_login": agent.login})
            }
            CreateAnswer::Legacy => json!({"agent_id": agent.agent_id.to_string()}),
        }
    }
}
