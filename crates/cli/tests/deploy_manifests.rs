//! The production assets in `deploy/` checked as far as a machine without Docker or Kubernetes allows:
//!
//! - every YAML file under `deploy/` parses (each document of multi-document files);
//! - `compose.yaml` wires the cluster: the services exist, both replicas mount the config, wait for healthy
//!   PostgreSQL and Redis and a completed migration, publish distinct host ports, and Prometheus and Grafana load
//!   the files the compose file mounts for them; `docker compose config` when the compose plugin is installed;
//! - `deploy/k8s/`: the kinds, probes on the container port, the Secret referenced and never embedded, a non-root
//!   read-only container, and a schema check by `kubernetes-validate` (installed by `scripts/ensure-tools.sh`) that
//!   is shown to fail on a broken manifest;
//! - the config of the compose replicas and the ConfigMap's `chainmux.toml` pass the real `chainmux check-config`;
//! - the Dockerfile is multi-stage, builds the `chainmux` package and runs it as a non-root user.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{chainmux_command, temp_dir};
use serde_json::{Value, json};

const TOOLS_HINT: &str = "run `bash scripts/ensure-tools.sh`";
/// Where the image expects its config (`CMD` of the Dockerfile); compose and Kubernetes mount it there.
const CONFIG_PATH: &str = "/etc/chainmux/chainmux.toml";
const CONFIG_DIR: &str = "/etc/chainmux";
const PORT: u64 = 8080;
/// The secrets the Deployment reads from `chainmux-secrets`.
const SECRET_KEYS: &[&str] = &["DATABASE_URL", "REDIS_URL", "ETH_RPC_URL"];
const REPLICA_ID_VAR: &str = "CHAINMUX_CLUSTER__REPLICA_ID";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

fn read_path(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// The documents of a YAML stream, `---` separated, YAML merge keys (`<<:`) applied, as JSON values. Empty
/// documents (only comments) are dropped.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read_path(path);
    let mut chunks = vec![String::new()];
    for line in text.lines() {
        let separator =
            line.strip_prefix("---").is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '#']));
        if separator {
            chunks.push(String::new());
        } else if let Some(chunk) = chunks.last_mut() {
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    let mut documents = Vec::new();
    for (index, chunk) in chunks.iter().enumerate() {
        let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(chunk)
            .unwrap_or_else(|err| panic!("{} (document {index}): not YAML: {err}", path.display()));
        if yaml.is_null() {
            continue;
        }
        yaml.apply_merge().unwrap_or_else(|err| panic!("{}: merge keys: {err}", path.display()));
        let value = serde_json::to_value(&yaml)
            .unwrap_or_else(|err| panic!("{} (document {index}): not JSON-shaped: {err}", path.display()));
        documents.push(value);
    }
    documents
}

/// The one document of a YAML file.
fn yaml(relative: &str) -> Value {
    let path = deploy_dir().join(relative);
    let mut documents = yaml_documents(&path);
    assert_eq!(documents.len(), 1, "{}: expected one document", path.display());
    documents.remove(0)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(path);
        }
    }
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value.as_str().unwrap_or_else(|| panic!("{what}: expected a string, got {value}"))
}

fn array_of<'a>(value: &'a Value, what: &str) -> &'a Vec<Value> {
    value.as_array().unwrap_or_else(|| panic!("{what}: expected a list, got {value}"))
}

/// A duration of compose syntax (`30s`, `1m30s`, `500ms`) in milliseconds.
fn compose_duration_ms(text: &str) -> u64 {
    let mut total = 0;
    let mut digits = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let number: u64 = digits.parse().unwrap_or_else(|_| panic!("bad duration {text:?}"));
        digits.clear();
        let unit = match c {
            'h' => 3_600_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            'm' => 60_000,
            's' => 1000,
            _ => panic!("bad duration {text:?}"),
        };
        total += number * unit;
    }
    assert!(digits.is_empty() && total > 0, "bad duration {text:?}");
    total
}

/// `key = value` lines of a TOML text by `section.key` (top-level tables only; array tables are skipped), as
/// `check-config` prints the resolved config.
fn toml_keys(text: &str) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    let mut section = Some(String::new());
    for line in text.lines().map(str::trim) {
        if line.starts_with("[[") {
            section = None;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_owned());
        } else if let (Some(section), Some((key, value))) = (&section, line.split_once(" = ")) {
            keys.insert(format!("{section}.{key}"), value.trim_matches('"').to_owned());
        }
    }
    keys
}

fn output_text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `chainmux check-config` on `path` with `env`; the resolved config's keys on success, the output on failure.
fn check_config(path: &Path, env: &[(&str, &str)]) -> Result<(String, BTreeMap<String, String>), String> {
    let mut command = chainmux_command();
    command.arg("check-config").arg("--config").arg(path).envs(env.iter().copied());
    let output = command.output().unwrap_or_else(|err| panic!("cannot run chainmux check-config: {err}"));
    let text = output_text(&output);
    if output.status.success() {
        Ok((text, toml_keys(&String::from_utf8_lossy(&output.stdout))))
    } else {
        Err(text)
    }
}

/// The `data` entry `chainmux.toml` of the ConfigMap in `deploy/k8s/configmap.yaml`.
fn configmap_toml() -> String {
    let configmap = yaml("k8s/configmap.yaml");
    assert_eq!(configmap["kind"], "ConfigMap");
    str_of(&configmap["data"]["chainmux.toml"], "configmap.yaml: data.chainmux.toml").to_owned()
}

/// The host file a compose service's bind mounts place at `container_path` (`./src:/dst[:ro]` entries).
fn mounted_file(service: &Value, container_path: &str) -> Option<PathBuf> {
    service["volumes"].as_array()?.iter().filter_map(Value::as_str).find_map(|volume| {
        let mut parts = volume.split(':');
        let (source, target) = (parts.next()?, parts.next()?);
        let source = source.strip_prefix("./")?;
        let rest = if container_path == target {
            ""
        } else {
            container_path.strip_prefix(target)?.strip_prefix('/')?
        };
        let host = deploy_dir().join(source);
        Some(if rest.is_empty() { host } else { host.join(rest) })
    })
}

/// The Dockerfile's stages: the `FROM` line and the instructions after it, continuation lines joined.
fn dockerfile_stages() -> Vec<(String, Vec<String>)> {
    let text = read_path(&deploy_dir().join("Dockerfile"));
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head.trim_end());
            current.push(' ');
        } else {
            current.push_str(line);
            instructions.push(std::mem::take(&mut current));
        }
    }
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for instruction in instructions {
        if instruction.to_ascii_uppercase().starts_with("FROM ") {
            stages.push((instruction, Vec::new()));
        } else {
            let (_, body) = stages.last_mut().unwrap_or_else(|| panic!("{instruction:?} before any FROM"));
            body.push(instruction);
        }
    }
    stages
}

/// The arguments of the stage's instructions named `name` (e.g. `USER`).
fn instruction_args<'a>(body: &'a [String], name: &str) -> Vec<&'a str> {
    body.iter()
        .filter_map(|i| {
            i.split_once(' ').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, a)| a.trim())
        })
        .collect()
}

/// Every document of the resources `deploy/k8s/kustomization.yaml` lists, with the file it came from.
fn k8s_resources() -> Vec<(String, Value)> {
    let kustomization = yaml("k8s/kustomization.yaml");
    assert_eq!(kustomization["kind"], "Kustomization");
    let files = array_of(&kustomization["resources"], "kustomization.yaml: resources");
    let mut documents = Vec::new();
    for file in files {
        let file = str_of(file, "a kustomization resource");
        for document in yaml_documents(&deploy_dir().join("k8s").join(file)) {
            documents.push((file.to_owned(), document));
        }
    }
    documents
}

fn k8s_object<'a>(resources: &'a [(String, Value)], kind: &str) -> &'a Value {
    let mut found = resources.iter().filter(|(_, r)| r["kind"] == kind);
    let (_, object) = found.next().unwrap_or_else(|| panic!("deploy/k8s has no {kind}"));
    assert!(found.next().is_none(), "deploy/k8s has more than one {kind}");
    object
}

/// `kubernetes-validate`: `$CHAINMUX_K8S_VALIDATE`, else the venv of `scripts/ensure-tools.sh`.
fn k8s_validator() -> PathBuf {
    let default = || {
        let tools = std::env::var_os("CHAINMUX_TOOLS_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("chainmux-tools"))
            });
        let tools =
            tools.unwrap_or_else(|| panic!("neither CHAINMUX_TOOLS_DIR nor HOME is set; {TOOLS_HINT}"));
        tools.join("k8s-validate").join("bin").join("kubernetes-validate")
    };
    let path = std::env::var_os("CHAINMUX_K8S_VALIDATE")
        .filter(|v| !v.is_empty())
        .map_or_else(default, PathBuf::from);
    assert!(path.exists(), "{} does not exist (set CHAINMUX_K8S_VALIDATE or {TOOLS_HINT})", path.display());
    path
}

/// Strict schema validation of `files`: `Ok` with the validator's output when every document passed.
fn validate_k8s(files: &[PathBuf]) -> Result<String, String> {
    let output = Command::new(k8s_validator())
        .arg("--strict")
        .args(files)
        .output()
        .unwrap_or_else(|err| panic!("cannot run kubernetes-validate: {err}"));
    let text = output_text(&output);
    if output.status.success() { Ok(text) } else { Err(text) }
}

#[test]
fn every_yaml_file_under_deploy_parses() {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    files.sort();
    for expected in ["compose.yaml", "k8s/deployment.yaml", "grafana/provisioning/dashboards/chainmux.yaml"] {
        assert!(files.contains(&deploy_dir().join(expected)), "{expected} missing from {files:?}");
    }
    for file in &files {
        let documents = yaml_documents(file);
        assert!(!documents.is_empty(), "{}: no document", file.display());
        for document in documents {
            assert!(document.is_object(), "{}: a document that is not a mapping: {document}", file.display());
        }
    }
}

#[test]
fn compose_file_wires_two_replicas_with_their_dependencies() {
    let compose = yaml("compose.yaml");
    let services = compose["services"].as_object().expect("compose.yaml: services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    for name in ["postgres", "redis", "anvil", "migrate", "chainmux-a", "chainmux-b", "prometheus", "grafana"]
    {
        assert!(names.contains(name), "compose.yaml has no {name} service: {names:?}");
    }
    let service = |name: &str| &services[name];

    assert!(str_of(&service("postgres")["image"], "postgres image").starts_with("postgres:16"));
    assert!(service("postgres")["healthcheck"]["test"].to_string().contains("pg_isready"));
    assert!(str_of(&service("redis")["image"], "redis image").starts_with("redis:7"));
    assert!(service("redis")["healthcheck"]["test"].to_string().contains("redis-cli"));
    let anvil = service("anvil");
    assert!(str_of(&anvil["image"], "anvil image").starts_with("ghcr.io/foundry-rs/foundry"));
    let anvil_run = format!("{} {}", anvil["entrypoint"], anvil["command"]);
    for part in ["anvil", "\"--host\",\"0.0.0.0\"", "--block-time", "31337"] {
        assert!(anvil_run.contains(part), "anvil's command lacks {part}: {anvil_run}");
    }
    assert!(anvil["healthcheck"]["test"].is_array(), "anvil has no healthcheck");

    let migrate = service("migrate");
    assert_eq!(migrate["command"], json!(["migrate", "--config", CONFIG_PATH]));
    assert_eq!(migrate["depends_on"]["postgres"]["condition"], "service_healthy");

    let mut replica_ids = BTreeSet::new();
    for name in ["migrate", "chainmux-a", "chainmux-b"] {
        let chainmux = service(name);
        assert_eq!(chainmux["build"]["context"], "..", "{name}: the build context is the repository root");
        let dockerfile = str_of(&chainmux["build"]["dockerfile"], "build.dockerfile");
        assert!(repo_root().join(dockerfile).is_file(), "{name}: {dockerfile} does not exist");
        let config = mounted_file(chainmux, CONFIG_PATH).unwrap_or_else(|| panic!("{name}: no config mount"));
        assert_eq!(config, deploy_dir().join("config/chainmux.toml"), "{name}");
        let env = &chainmux["environment"];
        for var in ["DATABASE_URL", "REDIS_URL"] {
            assert!(env[var].is_string(), "{name}: no {var} in {env}");
        }
        assert!(str_of(&env["DATABASE_URL"], "DATABASE_URL").contains("@postgres:5432/"));
        assert!(str_of(&env["REDIS_URL"], "REDIS_URL").contains("redis:6379"));
        if name == "migrate" {
            continue;
        }
        // No `command`: the image's CMD (`run`, indexer and gateway) applies.
        assert!(chainmux["command"].is_null(), "{name} overrides the image's run command");
        assert!(replica_ids.insert(str_of(&env[REPLICA_ID_VAR], REPLICA_ID_VAR).to_owned()), "{name}: id");
        let depends = &chainmux["depends_on"];
        for (dependency, condition) in [
            ("postgres", "service_healthy"),
            ("redis", "service_healthy"),
            ("anvil", "service_healthy"),
            ("migrate", "service_completed_successfully"),
        ] {
            assert_eq!(depends[dependency]["condition"], condition, "{name}: depends_on.{dependency}");
        }
        let grace = compose_duration_ms(str_of(&chainmux["stop_grace_period"], "stop_grace_period"));
        let (_, keys) = check_config(&config, &compose_env(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let drain: u64 = keys["gateway.drain_delay_ms"].parse().expect("drain_delay_ms");
        assert!(grace > drain + 5000, "{name}: stop_grace_period {grace} ms leaves no time after the drain");
    }

    // Published ports: each host port once; the replicas publish the port their config listens on.
    let mut host_ports = BTreeMap::new();
    for (name, service) in services {
        for port in service["ports"].as_array().into_iter().flatten() {
            let port = str_of(port, "a port mapping");
            let (host, container) = port.rsplit_once(':').unwrap_or_else(|| panic!("{name}: port {port}"));
            if let Some(other) = host_ports.insert(host.to_owned(), name.clone()) {
                panic!("host port {host} published by {other} and {name}");
            }
            if name.starts_with("chainmux-") {
                assert_eq!(container, PORT.to_string(), "{name}: {port}");
            }
        }
    }
    for (name, host) in [("chainmux-a", "8080"), ("chainmux-b", "8081")] {
        assert_eq!(host_ports.get(host).map(String::as_str), Some(name), "{host_ports:?}");
    }

    // Prometheus: the config file its command names, mounted from deploy/, scrapes both replicas and loads the
    // alert rules.
    let prometheus = service("prometheus");
    let command = array_of(&prometheus["command"], "prometheus command");
    let config_file = command
        .iter()
        .filter_map(Value::as_str)
        .find_map(|arg| arg.strip_prefix("--config.file="))
        .expect("prometheus: --config.file");
    let config_file =
        mounted_file(prometheus, config_file).expect("prometheus: its config file is not mounted");
    let config = yaml_documents(&config_file).remove(0);
    let targets: BTreeSet<String> = array_of(&config["scrape_configs"], "scrape_configs")
        .iter()
        .flat_map(|job| job["static_configs"].as_array().into_iter().flatten())
        .flat_map(|c| c["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    for replica in ["chainmux-a", "chainmux-b"] {
        assert!(
            targets.contains(&format!("{replica}:{PORT}")),
            "prometheus does not scrape {replica}: {targets:?}"
        );
    }
    let rule_files = array_of(&config["rule_files"], "rule_files");
    let rules_dir = config_file.parent().expect("a config file's directory");
    for rule_file in rule_files {
        let rule_file = rules_dir.join(str_of(rule_file, "a rule file"));
        assert!(rule_file.is_file(), "{} (relative to the Prometheus config)", rule_file.display());
    }
    let rule_paths: Vec<PathBuf> =
        rule_files.iter().filter_map(Value::as_str).map(|f| rules_dir.join(f)).collect();
    assert!(rule_paths.contains(&deploy_dir().join("prometheus").join("alerts.yml")), "{rule_paths:?}");

    // Grafana: a default Prometheus data source at the compose service, and a file provider whose path holds the
    // mounted dashboard.
    let grafana = service("grafana");
    let provisioned = |file: &str| {
        let path = format!("/etc/grafana/provisioning/{file}");
        let host = mounted_file(grafana, &path).unwrap_or_else(|| panic!("grafana: {path} is not mounted"));
        yaml_documents(&host).remove(0)
    };
    let datasources = provisioned("datasources/prometheus.yaml");
    let datasource = &array_of(&datasources["datasources"], "datasources")[0];
    assert_eq!(datasource["type"], "prometheus");
    assert_eq!(datasource["isDefault"], true, "the dashboard's DS_PROMETHEUS picks the default data source");
    let prometheus_port =
        array_of(&prometheus["ports"], "prometheus ports")[0].as_str().and_then(|p| p.rsplit_once(':'));
    let prometheus_port = prometheus_port.map(|(_, container)| container).expect("prometheus port");
    assert_eq!(datasource["url"], format!("http://prometheus:{prometheus_port}"));
    let providers = provisioned("dashboards/chainmux.yaml");
    let provider = &array_of(&providers["providers"], "providers")[0];
    assert_eq!(provider["type"], "file");
    let dashboards = str_of(&provider["options"]["path"], "providers[0].options.path");
    let dashboard = mounted_file(grafana, &format!("{dashboards}/chainmux-dashboard.json"))
        .expect("grafana: the dashboard is not mounted in the provider's path");
    assert_eq!(dashboard, deploy_dir().join("grafana/chainmux-dashboard.json"));
    let dashboard: Value = serde_json::from_str(&read_path(&dashboard)).expect("the dashboard is JSON");
    assert!(dashboard["uid"].is_string() && dashboard["panels"].is_array(), "not a dashboard");
}

/// The environment compose gives replica `name`, with the host names of the compose network.
fn compose_env(name: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("DATABASE_URL", "postgres://chainmux:secret-password@postgres:5432/chainmux"),
        ("REDIS_URL", "redis://redis:6379"),
        (REPLICA_ID_VAR, name),
    ]
}

#[test]
fn docker_compose_accepts_the_compose_file() {
    let docker_compose = Command::new("docker").args(["compose", "version"]).output();
    if !docker_compose.is_ok_and(|o| o.status.success()) {
        println!("note: `docker compose` is not installed; compose.yaml is only checked structurally");
        return;
    }
    let output = Command::new("docker")
        .args(["compose", "-f"])
        .arg(deploy_dir().join("compose.yaml"))
        .args(["config", "--quiet"])
        .output()
        .expect("docker compose config");
    assert!(output.status.success(), "docker compose config: {}", output_text(&output));
}

#[test]
fn config_files_pass_check_config() {
    let compose_config = deploy_dir().join("config/chainmux.toml");
    let (text, keys) =
        check_config(&compose_config, &compose_env("chainmux-a")).unwrap_or_else(|e| panic!("{e}"));
    assert!(!text.contains("secret-password"), "check-config printed the database password: {text}");
    assert_eq!(keys.get("gateway.listen").map(String::as_str), Some("0.0.0.0:8080"), "{text}");
    assert_eq!(keys.get("cluster.replica_id").map(String::as_str), Some("chainmux-a"), "{text}");
    assert!(keys.get("redis.url").is_some_and(|url| url.starts_with("redis://")), "{text}");
    assert!(text.contains("http://anvil:8545") && text.contains("chain_id = 31337"), "{text}");
    // The secrets come only from the environment: without REDIS_URL the file does not load.
    let without_redis =
        compose_env("chainmux-a").into_iter().filter(|(k, _)| *k != "REDIS_URL").collect::<Vec<_>>();
    let refused = check_config(&compose_config, &without_redis).expect_err("loaded without REDIS_URL");
    assert!(refused.contains("REDIS_URL"), "{refused}");

    let dir = temp_dir("k8s-config");
    let k8s_config = dir.join("chainmux.toml");
    std::fs::write(&k8s_config, configmap_toml()).expect("write the ConfigMap's chainmux.toml");
    let env = [
        ("DATABASE_URL", "postgres://chainmux:secret-password@postgres.example:5432/chainmux"),
        ("REDIS_URL", "rediss://:secret-password@redis.example:6379"),
        ("ETH_RPC_URL", "https://eth.example/v2/secret-key"),
        (REPLICA_ID_VAR, "chainmux-7d9f8b6c5-x2x4z"),
    ];
    let (text, keys) = check_config(&k8s_config, &env).unwrap_or_else(|e| panic!("the ConfigMap: {e}"));
    for secret in ["secret-password", "secret-key"] {
        assert!(!text.contains(secret), "check-config printed {secret}: {text}");
    }
    assert_eq!(keys.get("gateway.listen").map(String::as_str), Some("0.0.0.0:8080"), "{text}");
    assert_eq!(
        keys.get("cluster.replica_id").map(String::as_str),
        Some("chainmux-7d9f8b6c5-x2x4z"),
        "{text}"
    );
    let refused =
        check_config(&k8s_config, &env[1..]).expect_err("the ConfigMap loaded without DATABASE_URL");
    assert!(refused.contains("DATABASE_URL"), "{refused}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn kubernetes_manifests_run_non_root_replicas_with_probes_and_secret_references() {
    let resources = k8s_resources();
    let kinds: BTreeSet<&str> = resources.iter().filter_map(|(_, r)| r["kind"].as_str()).collect();
    for kind in ["Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler"] {
        assert!(kinds.contains(kind), "deploy/k8s has no {kind}: {kinds:?}");
    }
    assert!(
        !kinds.contains("Secret"),
        "a Secret is part of the kustomization; secrets stay out of the repository"
    );
    let listed: BTreeSet<&str> = resources.iter().map(|(file, _)| file.as_str()).collect();
    assert!(!listed.contains("secret.example.yaml"), "the example Secret is applied by kustomize");

    let deployment = k8s_object(&resources, "Deployment");
    assert!(deployment["spec"]["replicas"].as_u64().is_some_and(|r| r >= 2), "replicas");
    let pod = &deployment["spec"]["template"];
    let labels = pod["metadata"]["labels"].as_object().expect("pod labels");
    let selects_pods = |selector: &Value| {
        let selector = selector.as_object().expect("a label selector");
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(selects_pods(&deployment["spec"]["selector"]["matchLabels"]));
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], PORT.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    let spec = &pod["spec"];
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["securityContext"]["runAsUser"], json!(image_uid()), "the image's USER");
    let containers = array_of(&spec["containers"], "containers");
    let container = containers.iter().find(|c| c["name"] == "chainmux").expect("a chainmux container");
    let init = array_of(&spec["initContainers"], "initContainers");
    assert_eq!(init[0]["args"], json!(["migrate", "--config", CONFIG_PATH]));
    assert_eq!(container["args"], json!(["run", "--config", CONFIG_PATH]));

    let port = array_of(&container["ports"], "ports")
        .iter()
        .find(|p| p["containerPort"] == PORT)
        .unwrap_or_else(|| panic!("no containerPort {PORT}"));
    let probe_port_ok = |probe: &Value| probe == &port["name"] || probe == &json!(PORT);
    for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/health")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(probe_port_ok(&get["port"]), "{probe} port {} is not the container port", get["port"]);
    }

    // Configuration: the ConfigMap's chainmux.toml at the path the image's CMD reads.
    let configmap = k8s_object(&resources, "ConfigMap");
    let volumes = array_of(&spec["volumes"], "volumes");
    for c in containers.iter().chain(init) {
        let name = str_of(&c["name"], "container name");
        let mount =
            array_of(&c["volumeMounts"], "volumeMounts").iter().find(|m| m["mountPath"] == CONFIG_DIR);
        let mount = mount.unwrap_or_else(|| panic!("{name}: nothing mounted at {CONFIG_DIR}"));
        let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("the mounted volume");
        assert_eq!(volume["configMap"]["name"], configmap["metadata"]["name"], "{name}");

        // Secrets by reference only; the replica id from the pod name.
        let env = array_of(&c["env"], "env");
        for key in SECRET_KEYS {
            let var = env.iter().find(|e| e["name"] == *key).unwrap_or_else(|| panic!("{name}: no {key}"));
            let reference = &var["valueFrom"]["secretKeyRef"];
            assert_eq!((&reference["name"], &reference["key"]), (&json!("chainmux-secrets"), &json!(key)));
            assert!(var.get("value").is_none(), "{name}: {key} has a literal value");
        }
        for var in env {
            let value = var["value"].as_str().unwrap_or_default();
            assert!(!value.contains("://"), "{name}: {} embeds a URL: {value}", var["name"]);
        }
        let replica = env.iter().find(|e| e["name"] == REPLICA_ID_VAR).expect("the replica id variable");
        assert_eq!(replica["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");

        let security = &c["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{name}");
        assert!(c["resources"]["requests"]["cpu"].is_string(), "{name}: the HPA needs a CPU request");
    }
    let secret = yaml("k8s/secret.example.yaml");
    assert_eq!(
        (&secret["kind"], &secret["metadata"]["name"]),
        (&json!("Secret"), &json!("chainmux-secrets"))
    );
    for key in SECRET_KEYS {
        assert!(secret["stringData"][key].is_string(), "secret.example.yaml has no {key}");
    }

    // The drain fits in the grace period: /ready 503 for drain_delay_ms, then requests and the batch finish.
    let config_toml = configmap_toml();
    let drain_ms: u64 = toml_keys(&config_toml)
        .get("gateway.drain_delay_ms")
        .and_then(|v| v.parse().ok())
        .expect("the ConfigMap sets gateway.drain_delay_ms");
    let grace_ms =
        spec["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds") * 1000;
    assert!(
        grace_ms >= drain_ms + 15_000,
        "grace {grace_ms} ms leaves no time after the {drain_ms} ms drain"
    );
    assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);

    let service = k8s_object(&resources, "Service");
    assert!(selects_pods(&service["spec"]["selector"]), "the Service selects no chainmux pod");
    let service_port = &array_of(&service["spec"]["ports"], "service ports")[0];
    assert!(probe_port_ok(&service_port["targetPort"]), "targetPort {}", service_port["targetPort"]);

    let pdb = k8s_object(&resources, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(selects_pods(&pdb["spec"]["selector"]["matchLabels"]), "the PDB selects no chainmux pod");

    let hpa = k8s_object(&resources, "HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!((&target["kind"], &target["name"]), (&json!("Deployment"), &deployment["metadata"]["name"]));
    assert!(hpa["spec"]["minReplicas"].as_u64().is_some_and(|r| r >= 2), "fewer than 2 replicas");
    let metrics = array_of(&hpa["spec"]["metrics"], "hpa metrics");
    assert!(metrics.iter().any(|m| m["resource"]["name"] == "cpu"), "the HPA does not scale on CPU");
}

#[test]
fn kubernetes_manifests_pass_the_schema_check() {
    let dir = deploy_dir().join("k8s");
    let kustomization = yaml("k8s/kustomization.yaml");
    let mut files: Vec<PathBuf> = array_of(&kustomization["resources"], "resources")
        .iter()
        .map(|f| dir.join(str_of(f, "a resource")))
        .collect();
    files.push(dir.join("secret.example.yaml"));
    let report = validate_k8s(&files).unwrap_or_else(|report| panic!("schema check failed:\n{report}"));
    let documents: usize = files.iter().map(|f| yaml_documents(f).len()).sum();
    let passed = report.lines().filter(|l| l.contains(" passed for resource ")).count();
    assert_eq!(passed, documents, "not every document was validated:\n{report}");

    // The check can fail: an unknown field and a mistyped port in a copy of the Deployment.
    let broken_dir = temp_dir("k8s-broken");
    let deployment = read_path(&dir.join("deployment.yaml"));
    for (label, from, to, named) in [
        ("unknown field", "runAsNonRoot: true", "runAsNonRooot: true", "runAsNonRooot"),
        ("wrong type", "containerPort: 8080", "containerPort: \"http\"", "containerPort"),
    ] {
        assert!(deployment.contains(from), "deployment.yaml no longer has {from:?}");
        let broken = broken_dir.join("deployment.yaml");
        std::fs::write(&broken, deployment.replacen(from, to, 1)).expect("write the broken manifest");
        let report = validate_k8s(&[broken]).expect_err(&format!("a manifest with a {label} passed"));
        assert!(report.contains("did not validate") && report.contains(named), "{label}: {report}");
    }
    std::fs::remove_dir_all(&broken_dir).ok();
}

/// The numeric uid of the final stage's `USER`.
fn image_uid() -> u64 {
    let stages = dockerfile_stages();
    let (_, body) = stages.last().expect("a stage");
    let user = instruction_args(body, "USER").pop().expect("the final stage sets USER");
    let uid = user.split(':').next().unwrap_or_default();
    uid.parse().unwrap_or_else(|_| panic!("USER {user}: use a numeric uid, so runAsNonRoot can verify it"))
}

#[test]
fn dockerfile_builds_the_binary_and_runs_it_as_non_root() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "not a multi-stage build: {stages:?}");
    let (builder_from, builder) = &stages[0];
    let rust_version = read_path(&repo_root().join("Cargo.toml"))
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = ").map(|v| v.trim_matches('"').to_owned()))
        .expect("the workspace's rust-version");
    assert!(
        builder_from.starts_with(&format!("FROM rust:{rust_version}-"))
            && builder_from.ends_with(" AS builder"),
        "{builder_from}"
    );
    let cli_manifest = read_path(&repo_root().join("crates/cli/Cargo.toml"));
    assert!(cli_manifest.contains("\nname = \"chainmux\"\n"), "the cli package is no longer called chainmux");
    let build = instruction_args(builder, "RUN").into_iter().find(|r| r.contains("cargo build"));
    let build = build.expect("the builder runs cargo build");
    for part in ["-p chainmux", "--release", "--locked"] {
        assert!(build.contains(part), "cargo build lacks {part}: {build}");
    }
    // What the builder copies exists, and .dockerignore does not drop it from the context.
    let ignored: Vec<String> = read_path(&repo_root().join(".dockerignore"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    for excluded in ["target", ".git"] {
        assert!(ignored.iter().any(|i| i == excluded), ".dockerignore does not exclude {excluded}");
    }
    for copy in instruction_args(builder, "COPY") {
        let mut sources: Vec<&str> = copy.split_whitespace().filter(|a| !a.starts_with("--")).collect();
        sources.pop();
        for source in sources {
            assert!(repo_root().join(source).exists(), "COPY {source}: not in the repository");
            assert!(!ignored.iter().any(|i| i == source), "COPY {source}: excluded by .dockerignore");
        }
    }

    let (final_from, runtime) = stages.last().expect("a final stage");
    assert_eq!(final_from, "FROM debian:bookworm-slim");
    let copies = instruction_args(runtime, "COPY");
    assert!(
        copies.iter().any(|c| c.starts_with("--from=builder") && c.ends_with("/usr/local/bin/chainmux")),
        "the final stage does not copy the binary from the builder: {copies:?}"
    );
    assert!(image_uid() != 0, "the image runs as root");
    assert_eq!(instruction_args(runtime, "EXPOSE"), [PORT.to_string()]);
    assert_eq!(instruction_args(runtime, "ENTRYPOINT"), ["[\"chainmux\"]"]);
    let cmd = instruction_args(runtime, "CMD");
    let cmd: Value = serde_json::from_str(cmd.first().expect("CMD")).expect("CMD in exec form");
    assert_eq!(cmd, json!(["run", "--config", CONFIG_PATH]));
}
