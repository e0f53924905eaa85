//! Invalid manifests: each kind gets a precise message naming the path, exit code 2, and
//! nothing reaches the PDS. Valid ones in JSON and TOML pass too.

use crate::support::{Term, TestResult, example_manifest};

/// One broken manifest: how to break the example, and what must be said.
struct Case {
    name: &'static str,
    /// (text in the example, replacement); applied in order.
    edits: &'static [(&'static str, &'static str)],
    /// Each must appear in stderr (a path and a fragment of the message).
    expect: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "missing name",
        edits: &[("name: My Summarizer\n", "")],
        expect: &["- name: "],
    },
    Case {
        name: "bad capability id",
        edits: &[("- text.summarize", "- Text.Summarize")],
        expect: &["- capabilities[0]: \"Text.Summarize\" is not a capability id"],
    },
    Case {
        name: "float in sla",
        edits: &[("latencyP95Ms: 800", "latencyP95Ms: 800.5")],
        expect: &["- sla.latencyP95Ms: floats are not allowed"],
    },
    Case {
        name: "inputSchema not an object",
        edits: &[(
            "    inputSchema:\n      type: object\n",
            "    inputSchema: just text\n    unusedSchema:\n      type: object\n",
        )],
        expect: &["- operations[0].inputSchema: not a JSON Schema object"],
    },
    Case {
        name: "schema that does not compile",
        edits: &[("maxLength: 100000", "pattern: \"([a-z\"")],
        expect: &[
            "- operations[0].inputSchema.properties.text.pattern: does not compile as a JSON Schema",
        ],
    },
    Case {
        name: "schema with an unknown type",
        edits: &[("summary: { type: string }", "summary: { type: text }")],
        expect: &["- operations[0].outputSchema.properties.summary.type"],
    },
    Case {
        name: "bad region",
        edits: &[("regions: [DE, US]", "regions: [DE, de]")],
        expect: &["- regions[1]: \"de\""],
    },
    Case {
        name: "negative amount",
        edits: &[("amount: \"0.002\"", "amount: \"-1\"")],
        expect: &["- pricing[0].amount: \"-1\" is not a decimal amount"],
    },
    Case {
        name: "ill-formed amount",
        edits: &[("amount: \"0.002\"", "amount: \"1.2.3\"")],
        expect: &["- pricing[0].amount: \"1.2.3\" is not a decimal amount"],
    },
    Case {
        name: "unquoted amount (a float)",
        edits: &[("amount: \"0.002\"", "amount: 0.002")],
        expect: &[
            "- pricing[0].amount: floats are not allowed",
            "quoted decimal strings",
        ],
    },
    Case {
        name: "duplicate operation ids",
        edits: &[(
            "operations:\n",
            "operations:\n  - id: summarize\n    description: again\n",
        )],
        expect: &["- operations[1].id: duplicate operation id \"summarize\""],
    },
    Case {
        name: "url scheme not http(s)",
        edits: &[(
            "url: https://summarizer.example.com/mcp",
            "url: ftp://summarizer.example.com/mcp",
        )],
        expect: &["- endpoints[0].url: must be an http(s) URL"],
    },
    Case {
        name: "url that is no URL",
        edits: &[(
            "url: https://summarizer.example.com/mcp",
            "url: summarizer dot com",
        )],
        expect: &["- endpoints[0].url: "],
    },
    Case {
        name: "over-long description",
        edits: &[(
            "description: Summarizes long texts into a few sentences.",
            "description: Summarizes long texts into a few sentences. Summarizes long texts into a few sentences. Summarizes long texts into a few sentences. Summarizes long texts into a few sentences. Summarizes long texts into a few sentences. Summarizes long texts into a few sentences. Summarizes long texts into a few sentences. Summarizes long texts into a few sentences.",
        )],
        expect: &["- description: "],
    },
    Case {
        name: "bad slug",
        edits: &[("slug: my-summarizer", "slug: my summarizer!")],
        expect: &["- slug: "],
    },
    Case {
        name: "missing slug",
        edits: &[("slug: my-summarizer\n", "")],
        expect: &["- slug: required"],
    },
    Case {
        name: "availability over 100%",
        edits: &[("availabilityBp: 9990", "availabilityBp: 12000")],
        expect: &["- sla.availabilityBp: "],
    },
    Case {
        name: "paid price without currency",
        edits: &[("    currency: USD\n", "")],
        expect: &["- pricing[0].currency: required for pricing model \"per_call\""],
    },
    Case {
        name: "no endpoints",
        edits: &[(
            "endpoints:\n  - protocol: mcp\n    url: https://summarizer.example.com/mcp\n    transport: streamable-http\n",
            "endpoints: []\n",
        )],
        expect: &["- endpoints: "],
    },
    Case {
        name: "bad version",
        edits: &[("version: \"1.0.0\"", "version: \"v1\"")],
        expect: &["- version: "],
    },
    Case {
        name: "several problems at once, all reported",
        edits: &[
            ("- text.summarize", "- Text.Summarize"),
            ("latencyP95Ms: 800", "latencyP95Ms: 800.5"),
            ("amount: \"0.002\"", "amount: 0.002"),
            ("regions: [DE, US]", "regions: [XX1]"),
        ],
        expect: &[
            "- capabilities[0]: ",
            "- pricing[0].amount: ",
            "- regions[0]: ",
            "- sla.latencyP95Ms: ",
            "error: 4 problems in ",
        ],
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_are_refused_with_their_paths_and_nothing_is_written() -> TestResult {
    let t = Term::start(1).await?;
    t.login(0).await?;
    let example = example_manifest(&t).await?;
    assert!(CASES.len() >= 10);
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let mut text = example.clone();
        for (from, to) in case.edits {
            assert!(
                text.contains(from),
                "{}: the example has no {from:?}",
                case.name
            );
            text = text.replacen(from, to, 1);
        }
        let path = t.write(&format!("bad-{i}.yaml"), &text)?;
        for dry in [true, false] {
            let mut args = vec!["publish"];
            if dry {
                args.push("--dry-run");
            }
            let p = path.display().to_string();
            args.push(&p);
            let run = t.run(&args).await?;
            let missing: Vec<_> = case
                .expect
                .iter()
                .filter(|e| !run.stderr.contains(*e))
                .collect();
            if run.code != 2 || !missing.is_empty() || !run.stdout.is_empty() {
                failures.push(format!(
                    "{} (dry run {dry}): exit {}, missing {missing:?}\n{}{}",
                    case.name, run.code, run.stdout, run.stderr
                ));
            }
            assert!(
                run.stderr.contains("nothing was written"),
                "{}: {}",
                case.name,
                run.stderr
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // Unreadable files: also exit 2.
    let broken = t.write("broken.yaml", "slug: [unclosed\n")?;
    let run = t
        .run(&["publish", &broken.display().to_string()])
        .await?
        .expect(2);
    assert!(run.stderr.contains("invalid YAML"), "{}", run.stderr);
    let list = t.write("list.json", "[1, 2]")?;
    t.run(&["publish", &list.display().to_string()])
        .await?
        .expect(2);
    let txt = t.write("service.txt", "slug: x")?;
    t.run(&["publish", &txt.display().to_string()])
        .await?
        .expect(2);
    t.run(&["publish", "does-not-exist.yaml"]).await?.expect(1);

    // Nothing reached the PDS.
    assert!(t.records(0, "dev.guildhall.service").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_toml_manifests_publish_like_yaml() -> TestResult {
    let t = Term::start(1).await?;
    t.login(0).await?;
    let json = t.write(
        "svc.json",
        r#"{"slug": "from-json", "name": "From JSON", "capabilities": ["text.translate"],
            "endpoints": [{"protocol": "http", "url": "https://json.example.com"}],
            "pricing": [{"model": "free"}], "descripton": "typo"}"#,
    )?;
    let toml = t.write(
        "svc.toml",
        r#"slug = "from-toml"
name = "From TOML"
capabilities = ["text.translate"]
createdAt = 2026-02-01T10:00:00Z

[[endpoints]]
protocol = "a2a"
url = "https://toml.example.com/a2a"

[sla]
latencyP95Ms = 300
"#,
    )?;
    let bad_toml = t.write(
        "bad.toml",
        "slug = \"x\"\nname = \"X\"\n[sla]\nlatencyP95Ms = 1.5\n",
    )?;
    let run = t
        .run(&["publish", &bad_toml.display().to_string()])
        .await?
        .expect(2);
    assert!(
        run.stderr.contains("- sla.latencyP95Ms: floats"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("- capabilities: "), "{}", run.stderr);

    let run = t
        .run(&["publish", &json.display().to_string()])
        .await?
        .expect(0);
    assert!(
        run.stderr.contains("warning: unknown field \"descripton\"")
            && run.stderr.contains("did you mean \"description\"?"),
        "{}",
        run.stderr
    );
    t.run(&["publish", &toml.display().to_string()])
        .await?
        .expect(0);
    let mut recs = t.records(0, "dev.guildhall.service").await?;
    recs.sort_by(|a, b| a.0.cmp(&b.0));
    let keys: Vec<&str> = recs.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(keys, ["from-json", "from-toml"]);
    assert_eq!(recs[1].2["createdAt"], "2026-02-01T10:00:00Z");
    assert_eq!(recs[1].2["sla"]["latencyP95Ms"], 300);
    assert_eq!(recs[0].2["pricing"][0]["model"], "free");
    Ok(())
}
