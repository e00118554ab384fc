//! Conditions as the reconciler decides them, and how they merge into the status: kstatus's
//! `Ready` / `Reconciling` / `Stalled` triple, and lastTransitionTime kept while a condition's
//! status holds, so an idle session causes no status writes.

use crds::condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// One condition as the reconciler decided it.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// `previous` conditions updated with `decided`, keeping lastTransitionTime when the status holds.
pub fn merge(previous: &[Condition], decided: Vec<DesiredCondition>, generation: i64, now: &Time) -> Vec<Condition> {
    decided
        .into_iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" }.to_owned();
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: d.type_.to_owned(),
                status,
                reason: d.reason.to_owned(),
                message: d.message,
                observed_generation: Some(generation),
                last_transition_time,
            }
        })
        .collect()
}

/// The kstatus triple for a session that is working, still converging, or stuck.
pub fn kstatus(ready: bool, stalled: Option<(&'static str, String)>, waiting_for: &str) -> Vec<DesiredCondition> {
    match stalled {
        Some((reason, message)) => vec![
            DesiredCondition {
                type_: condition::READY,
                status: false,
                reason,
                message: message.clone(),
            },
            DesiredCondition {
                type_: condition::RECONCILING,
                status: false,
                reason,
                message: message.clone(),
            },
            DesiredCondition {
                type_: condition::STALLED,
                status: true,
                reason,
                message,
            },
        ],
        None if ready => vec![
            DesiredCondition {
                type_: condition::READY,
                status: true,
                reason: "Capturing",
                message: "every sniffer and parser is ready".into(),
            },
            DesiredCondition {
                type_: condition::RECONCILING,
                status: false,
                reason: "Capturing",
                message: String::new(),
            },
            DesiredCondition {
                type_: condition::STALLED,
                status: false,
                reason: "Capturing",
                message: String::new(),
            },
        ],
        None => vec![
            DesiredCondition {
                type_: condition::READY,
                status: false,
                reason: "Progressing",
                message: waiting_for.to_owned(),
            },
            DesiredCondition {
                type_: condition::RECONCILING,
                status: true,
                reason: "Progressing",
                message: waiting_for.to_owned(),
            },
            DesiredCondition {
                type_: condition::STALLED,
                status: false,
                reason: "Progressing",
                message: String::new(),
            },
        ],
    }
}

/// Ready because the session reached a resting state the user asked for (suspended, completed).
pub fn kstatus_done(reason: &'static str, message: String) -> Vec<DesiredCondition> {
    vec![
        DesiredCondition {
            type_: condition::READY,
            status: true,
            reason,
            message,
        },
        DesiredCondition {
            type_: condition::RECONCILING,
            status: false,
            reason,
            message: String::new(),
        },
        DesiredCondition {
            type_: condition::STALLED,
            status: false,
            reason,
            message: String::new(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let first = merge(&[], kstatus(false, None, "waiting for sniffers"), 1, &time(100));
        let again = merge(&first, kstatus(false, None, "waiting for sniffers"), 1, &time(200));
        assert_eq!(first, again, "an unchanged condition must not be rewritten");
        let ready = merge(&again, kstatus(true, None, ""), 2, &time(300));
        let ready_condition = ready.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (
                ready_condition.status.as_str(),
                ready_condition.last_transition_time.clone()
            ),
            ("True", time(300))
        );
        assert_eq!(ready_condition.observed_generation, Some(2));
    }

    #[test]
    fn stalled_says_why() {
        let stalled = merge(
            &[],
            kstatus(false, Some(("InvalidFilter", "bad".into())), ""),
            1,
            &time(1),
        );
        let condition = stalled.iter().find(|c| c.type_ == "Stalled").unwrap();
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("True", "InvalidFilter")
        );
    }
}
