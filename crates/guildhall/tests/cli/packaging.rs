//! Static checks of the container packaging (no Docker daemon here to build or run it): the
//! image runs as an unprivileged user that owns the data directory, and docker-compose.yml takes
//! the database password from the environment, required, never written in the file.

use serde_yaml_ng::Value;

use crate::support::{TestResult, repo_root};

/// The value Compose would give `text` with `env` set: `${VAR}`, `${VAR:?message}` (an error
/// when VAR is unset or empty) and `${VAR:-default}`; `$$` is a literal `$`.
fn interpolate(text: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let lookup = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_empty())
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').ok_or("unclosed ${")?;
            let expr = &r[..end];
            rest = &r[end + 1..];
            if let Some((name, message)) = expr.split_once(":?") {
                out.push_str(lookup(name).ok_or_else(|| format!("{name}: {message}"))?);
            } else if let Some((name, default)) = expr.split_once(":-") {
                out.push_str(lookup(name).unwrap_or(default));
            } else {
                out.push_str(lookup(expr).unwrap_or(""));
            }
        } else {
            return Err(format!("bare $ in {text:?}"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Every `environment` entry of every service, as (service, name, value).
fn environment(compose: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let Some(services) = compose.get("services").and_then(Value::as_mapping) else {
        return out;
    };
    for (name, service) in services {
        let name = name.as_str().unwrap_or_default().to_owned();
        match service.get("environment") {
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other).unwrap_or_default(),
                    };
                    out.push((name.clone(), k.as_str().unwrap_or_default().to_owned(), v));
                }
            }
            Some(Value::Sequence(list)) => {
                for item in list.iter().filter_map(Value::as_str) {
                    let (k, v) = item.split_once('=').unwrap_or((item, ""));
                    out.push((name.clone(), k.to_owned(), v.to_owned()));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn compose_takes_the_database_password_from_the_environment() -> TestResult {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml"))?;
    let compose: Value = serde_yaml_ng::from_str(&text)?;
    let env = environment(&compose);
    assert!(!env.is_empty(), "no environment in docker-compose.yml");
    let password = "Sample-pw_0123";
    let set = [("GUILDHALL_DB_PASSWORD", password)];
    let mut checked = 0;
    for (service, key, value) in &env {
        // Unset, Compose refuses to start rather than use an empty or built-in password.
        let secretish = key.contains("PASSWORD") || value.contains('@');
        if secretish {
            let unset = interpolate(value, &[]);
            assert!(
                unset.is_err(),
                "{service}.{key} starts without GUILDHALL_DB_PASSWORD: {unset:?}"
            );
        }
        let resolved = interpolate(value, &set).map_err(anyhow::Error::msg)?;
        if key.contains("PASSWORD") && !key.ends_with("_FILE") {
            assert_eq!(resolved, password, "{service}.{key} = {value:?}");
            checked += 1;
        }
        // A URL with credentials gets its password from the environment too.
        if let Ok(url) = url::Url::parse(&resolved)
            && !url.username().is_empty()
        {
            assert_eq!(
                url.password(),
                Some(password),
                "{service}.{key} = {value:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "POSTGRES_PASSWORD and GUILDHALL_DB: {env:?}");
    // The password Compose used to hard-code appears nowhere.
    assert!(!text.contains("guildhall:guildhall@"), "{text}");
    assert!(!text.contains("POSTGRES_PASSWORD: guildhall"), "{text}");

    // A .env file with the password is never copied into the image.
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore"))?;
    assert!(ignore.lines().any(|l| l.trim() == ".env"), "{ignore}");
    Ok(())
}

#[test]
fn the_image_runs_as_an_unprivileged_user() -> TestResult {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile"))?;
    // Instructions, with continuation lines joined and comments dropped.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .ok_or_else(|| anyhow::anyhow!("no FROM"))?;
    let stage = &lines[last_from..];
    let directive = |name: &str| {
        stage
            .iter()
            .rposition(|l| l.split_whitespace().next() == Some(name))
    };
    let user_at = directive("USER").ok_or_else(|| anyhow::anyhow!("no USER in the image"))?;
    let entry_at = directive("ENTRYPOINT").ok_or_else(|| anyhow::anyhow!("no ENTRYPOINT"))?;
    assert!(user_at < entry_at, "USER comes after ENTRYPOINT");
    let user = stage[user_at]
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default();
    assert!(
        !user.is_empty() && user != "root" && user != "0",
        "USER {user}"
    );
    // The user exists in the image, and owns the data directory it starts in.
    let created = stage.iter().any(|l| {
        l.starts_with("RUN ")
            && l.contains("useradd")
            && (l.contains(&format!("--uid {user}")) || l.contains(&format!(" {user} ")))
    });
    assert!(created, "USER {user} is never created:\n{text}");
    let workdir = stage
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("WORKDIR "))
        .ok_or_else(|| anyhow::anyhow!("no WORKDIR in the image"))?;
    let owned = stage.iter().any(|l| {
        l.starts_with("RUN ")
            && l.contains(workdir)
            && (l.contains("chown") || (l.contains("install -d") && l.contains("-o ")))
    });
    assert!(owned, "{workdir} is not given to the user:\n{text}");
    Ok(())
}
