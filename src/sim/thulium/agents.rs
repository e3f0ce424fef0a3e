//! The Thulium simulator's agents, with the lookups its checks make on every create
//! indexed: logins and numbers are unique, and scanning 10,000 agents per create made
//! the simulator, not the client, the cost the bench measured.

use std::collections::{BTreeMap, HashMap};

use super::validate::Agent;

/// Every change goes through [`Agents::insert`] and [`Agents::remove`], so the indexes
/// cannot fall behind the agents.
#[derive(Default)]
pub(super) struct Agents {
    by_id: BTreeMap<u64, Agent>,
    /// Logins compare case-insensitively (ASCII: the only letters a login may hold).
    by_login: HashMap<String, u64>,
    by_number: HashMap<u64, u64>,
}

impl Agents {
    pub(super) fn get(&self, agent_id: u64) -> Option<&Agent> {
        self.by_id.get(&agent_id)
    }

    /// In agent-id order, the order the list serves.
    pub(super) fn values(&self) -> impl Iterator<Item = &Agent> {
        self.by_id.values()
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn with_login(&self, login: &str) -> Option<&Agent> {
        self.by_login.get(&login.to_ascii_lowercase()).and_then(|id| self.by_id.get(id))
    }

    pub(super) fn with_number(&self, number: u64) -> Option<&Agent> {
        self.by_number.get(&number).and_then(|id| self.by_id.get(id))
    }

    /// Adds the agent, or replaces the one with its id.
    pub(super) fn insert(&mut self, agent: Agent) {
        self.remove(agent.agent_id);
        self.by_login.insert(agent.login.to_ascii_lowercase(), agent.agent_id);
        self.by_number.insert(agent.number, agent.agent_id);
        self.by_id.insert(agent.agent_id, agent);
    }

    pub(super) fn remove(&mut self, agent_id: u64) -> Option<Agent> {
        let agent = self.by_id.remove(&agent_id)?;
        let login = agent.login.to_ascii_lowercase();
        if self.by_login.get(&login) == Some(&agent_id) {
            self.by_login.remove(&login);
        }
        if self.by_number.get(&agent.number) == Some(&agent_id) {
            self.by_number.remove(&agent.number);
        }
        Some(agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(agent_id: u64, login: &str, number: u64) -> Agent {
        Agent {
            agent_id,
            login: login.into(),
            name: "N".into(),
            surname: "S".into(),
            email: None,
            password: "p".into(),
            number,
            change_password: false,
            callerid: String::new(),
            language: "pl".into(),
            active: true,
            outbound_mode: "manual".into(),
            roles: vec![],
            group_id: 1,
        }
    }

    #[test]
    fn a_replaced_agent_is_found_by_its_new_keys_only() {
        let mut agents = Agents::default();
        agents.insert(agent(1, "Anna.K", 101));
        agents.insert(agent(2, "bob", 102));
        assert_eq!(agents.with_login("anna.k").map(|a| a.agent_id), Some(1));
        agents.insert(agent(1, "anna.n", 103));
        assert!(agents.with_login("anna.k").is_none());
        assert!(agents.with_number(101).is_none());
        assert_eq!(agents.with_number(103).map(|a| a.agent_id), Some(1));
        assert_eq!(agents.remove(2).map(|a| a.login), Some("bob".to_string()));
        assert!(agents.with_login("BOB").is_none());
        assert_eq!(agents.values().map(|a| a.agent_id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(agents.len(), 1);
    }
}
