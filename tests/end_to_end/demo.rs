//! The README's first command, `bash scripts/demo.sh`, works (root only: it
//! starts a private Postfix): it exits cleanly, and what snmpd serves for
//! the agent agrees with the mail the demo sent and with what Postfix did
//! (the mailboxes, the queue), and with `postfix-agentx parse` over the
//! same log.
//!
//! What the demo sends: three SMTP messages to alice and bob, one to an
//! unknown user (rejected at RCPT, so never queued), one relayed to a closed
//! port (deferred, then put on hold with `postsuper -h`), and one to alice
//! through `sendmail`.

use crate::support;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{is_root, require_program};

/// The demo builds the release binary first, which can take minutes.
const DEMO_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// Runs the demo to its end and returns its exit success and its output.
fn run_demo() -> (bool, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("bash")
        .arg(repo.join("scripts/demo.sh"))
        .current_dir(repo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start scripts/demo.sh: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the demo") {
            break status;
        }
        if started.elapsed() > DEMO_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo did not finish in {DEMO_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    (status.success(), format!("{out}\n--- stderr ---\n{err}"))
}

/// `POSTFIX-MIB::postfixDelivered.0 = Counter64: 7` → ("postfixDelivered", 7).
fn walked_counters(output: &str) -> HashMap<String, u64> {
    output
        .lines()
        .filter_map(|line| {
            let (name, value) = line.strip_prefix("POSTFIX-MIB::")?.split_once(".0 = ")?;
            let number = value
                .strip_prefix("Counter64: ")?
                .split_whitespace()
                .next()?;
            Some((name.to_string(), number.parse().ok()?))
        })
        .collect()
}

/// The `parse` lines at the end: `delivered    7`.
fn parsed_counters(output: &str) -> HashMap<String, u64> {
    let after = output
        .split("== postfix-agentx parse over the same log:")
        .nth(1)
        .unwrap_or_default();
    after
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (name, value) = (words.next()?, words.next()?);
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// `== what actually happened: 4 messages in alice's mailbox, 3 in bob's`.
fn mailbox_counts(output: &str) -> Option<(u64, u64)> {
    let line = output
        .lines()
        .find(|l| l.starts_with("== what actually happened: "))?;
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match numbers[..] {
        [alice, bob] => Some((alice, bob)),
        _ => None,
    }
}

#[test]
fn the_readme_demo_serves_what_postfix_did() {
    let _exclusive = support::exclusive();
    assert!(
        is_root(),
        "the demo starts a private Postfix, which needs root; run the tests as root, as .ci/run does"
    );
    for (program, package) in [
        ("postfix", "postfix"),
        ("snmpd", "snmpd"),
        ("snmpwalk", "snmp"),
        ("snmptable", "snmp"),
        ("npm", "npm"),
    ] {
        require_program(program, package);
    }
    let (ok, output) = run_demo();
    assert!(ok, "scripts/demo.sh failed:\n{output}");
    for stall in [
        "(Postfix still has mail in flight",
        "(the agent had not caught up",
    ] {
        assert!(
            !output.contains(stall),
            "the demo reported {stall}:\n{output}"
        );
    }

    let (alice, bob) =
        mailbox_counts(&output).unwrap_or_else(|| panic!("no mailbox line:\n{output}"));
    assert_eq!(
        (alice, bob),
        (4, 3),
        "three SMTP messages to both, one sendmail to alice:\n{output}"
    );

    let walked = walked_counters(&output);
    let served = |name: &str| {
        *walked
            .get(name)
            .unwrap_or_else(|| panic!("snmpwalk printed no {name}:\n{output}"))
    };
    assert_eq!(served("postfixDelivered"), alice + bob, "{output}");
    assert_eq!(
        served("postfixReceived"),
        5,
        "five messages queued:\n{output}"
    );
    assert_eq!(served("postfixRejected"), 1, "one unknown user:\n{output}");
    assert_eq!(
        served("postfixDeferred"),
        1,
        "one relay to a closed port:\n{output}"
    );
    assert_eq!(served("postfixHeld"), 1, "postsuper -h once:\n{output}");

    let parsed = parsed_counters(&output);
    for (parse_name, mib_name) in [
        ("delivered", "postfixDelivered"),
        ("received", "postfixReceived"),
        ("rejected", "postfixRejected"),
        ("deferred", "postfixDeferred"),
        ("held", "postfixHeld"),
    ] {
        assert_eq!(
            parsed.get(parse_name).copied(),
            Some(served(mib_name)),
            "parse and snmpd disagree on {parse_name}:\n{output}"
        );
    }

    // The held message is in the hold queue, and the banner probe passed.
    assert!(
        output.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.first() == Some(&"hold") && w.get(1) == Some(&"1")
        }),
        "the queue table shows no held message:\n{output}"
    );
    assert!(
        output.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 3 && w[0] == "smtp" && w[1] == "smtp" && w[3] == "ok"
        }),
        "the probe table shows no passing SMTP probe:\n{output}"
    );
}
