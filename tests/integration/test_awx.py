"""AWX as code: the execution environment builds a context, every job template points at a playbook that exists,
its survey asks only for options of the roles that playbook runs (with the right types), the committed surveys
are what the generator makes, the EE's dependencies agree with galaxy.yml and the plugins' imports,
playbooks/awx_configure.yml parses, and playbooks/health_check.yml fails when a part of the stack is down."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitoring.harness import MOCK_ENGINE, PROMETHEUS, Process, free_ports, wait_http

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GENERATOR = ROOT / "tests" / "tools" / "awx_surveys.py"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ROLE_PREFIX = "onprem.deepseek."
# Collections the EE has on top of galaxy.yml's dependencies, and why
EE_EXTRA_COLLECTIONS = {"awx.awx": "playbooks/awx_configure.yml"}


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def run(*args, cwd=ROOT, env=None, timeout=300):
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


TEMPLATES = load_yaml(ROOT / "awx" / "job_templates.yml")["job_templates"]
TEMPLATE_IDS = [t["id"] for t in TEMPLATES]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    return canonical(re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0])


def requirement_lines(path: Path) -> list:
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Which roles a playbook runs


def _role_name(value) -> str | None:
    name = value.get("role", value.get("name")) if isinstance(value, dict) else value
    if isinstance(name, str) and name.startswith(ROLE_PREFIX):
        return name[len(ROLE_PREFIX):]
    return None


def _task_roles(tasks) -> set:
    found = set()
    for task in tasks or []:
        for key in ("block", "rescue", "always"):
            found |= _task_roles(task.get(key))
        for action in ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role"):
            if action in task:
                name = _role_name(task[action])
                if name:
                    found.add(name)
    return found


def playbook_roles(path: Path, seen=None) -> set:
    """Roles of this collection that a playbook runs, through import_playbook too."""
    seen = set() if seen is None else seen
    if path in seen:
        return set()
    seen.add(path)
    found = set()
    for play in load_yaml(path) or []:
        imported = play.get("ansible.builtin.import_playbook", play.get("import_playbook"))
        if imported:
            found |= playbook_roles((path.parent / imported).resolve(), seen)
            continue
        for entry in play.get("roles") or []:
            name = _role_name(entry)
            if name:
                found.add(name)
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            found |= _task_roles(play.get(section))
    return found


def role_options(role: str) -> dict:
    spec = load_yaml(ROOT / "roles" / role / "meta" / "argument_specs.yml")
    return spec["argument_specs"]["main"]["options"]


def test_playbook_roles_follows_imports_and_include_role():
    """The role finder the survey check relies on sees through site.yml and include_role."""
    assert playbook_roles(ROOT / "site.yml") >= {"preflight", "model_fetch", "inference", "gateway", "monitoring"}
    assert playbook_roles(ROOT / "playbooks" / "inference_rolling_restart.yml") == {"inference"}
    assert playbook_roles(ROOT / "playbooks" / "health_check.yml") == set()


# ---------------------------------------------------------------------------------------------------------------
# (3) every job template points at an existing playbook


@pytest.mark.parametrize("template", TEMPLATES, ids=TEMPLATE_IDS)
def test_job_template_playbook_exists(template):
    playbook = ROOT / template["playbook"]
    assert playbook.is_file(), f"job template {template['id']}: {template['playbook']} does not exist"
    assert isinstance(load_yaml(playbook), list), f"{template['playbook']} is not a playbook (a list of plays)"


def test_job_templates_cover_the_day_to_day_jobs():
    playbooks = {t["playbook"] for t in TEMPLATES}
    for wanted in ("playbooks/preflight.yml", "playbooks/site.yml", "playbooks/model_update.yml",
                   "playbooks/inference_rolling_restart.yml", "playbooks/health_check.yml"):
        assert wanted in playbooks, f"no job template runs {wanted}"


# ---------------------------------------------------------------------------------------------------------------
# (2) survey variables exist in an argument_spec of a role the playbook runs, with a matching type

SURVEY_TYPES = {  # argument-spec type -> AWX survey types that hand the playbook a value of that type
    "str": {"text", "password", "multiplechoice"},
    "path": {"text"},
    "raw": {"text", "multiplechoice"},
    "int": {"integer"},
    "float": {"float"},
    "bool": {"multiplechoice"},
    "list": {"multiselect"},
}
# A multiplechoice answer reaches the playbook as the string "true" / "false"
BOOL_CONSUMERS = re.compile(r"\|\s*bool\b")


def survey_file(template_id: str) -> Path:
    return ROOT / "awx" / "surveys" / f"{template_id}.json"


def _jinja_uses(text: str, variable: str) -> list:
    """Each use of variable inside a Jinja expression or a bare conditional, with what follows it."""
    uses = []
    word = re.compile(rf"\b{re.escape(variable)}\b")
    spans = [m.group(0) for m in re.finditer(r"\{\{.*?\}\}|\{%.*?%\}", text, re.S)]
    conditional = False
    indent = -1
    for line in text.splitlines():
        stripped = line.strip()
        level = len(line) - len(line.lstrip())
        key = re.match(r"(?:-\s+)?(when|that|until|failed_when|changed_when):\s*(.*)$", stripped)
        if key:
            conditional, indent = True, level
            if key.group(2) and "{{" not in key.group(2):
                spans.append(key.group(2))
            continue
        if conditional and stripped.startswith("- ") and level >= indent and "{{" not in stripped:
            spans.append(stripped[2:])
        elif stripped and level <= indent:
            conditional = False
    for span in spans:
        for match in word.finditer(span):
            uses.append((span, span[match.end():]))
    return uses


def bool_misuses(role: str, variable: str) -> list:
    """Places where a bool option is used as a bare truth value (a survey's "false" string would be true)."""
    problems = []
    role_dir = ROOT / "roles" / role
    for path in sorted(role_dir.rglob("*")):
        if path.suffix not in {".yml", ".yaml", ".j2"} or path.parent.name in {"meta", "defaults"}:
            continue
        text = path.read_text(encoding="utf-8")
        for span, after in _jinja_uses(text, variable):
            if BOOL_CONSUMERS.match(after.lstrip()) or re.fullmatch(rf"\{{\{{\s*{variable}\s*\}}\}}", span.strip()):
                continue  # `| bool`, or a whole module parameter (Ansible converts it to the option's type)
            problems.append(f"{path.relative_to(ROOT)}: {span.strip()[:120]}")
    return problems


@pytest.mark.parametrize("template", TEMPLATES, ids=TEMPLATE_IDS)
def test_survey_variables_are_role_options_of_the_playbook(template):
    path = survey_file(template["id"])
    asked = [o for group in template.get("survey") or [] for o in group.get("options") or []]
    if not asked:
        assert not path.exists(), f"{path.relative_to(ROOT)} exists but {template['id']} asks nothing"
        return
    assert (ROOT / template["playbook"]).is_file(), f"{template['playbook']} does not exist"
    roles = playbook_roles(ROOT / template["playbook"])
    specs = {role: role_options(role) for role in roles}
    survey = json.loads(path.read_text(encoding="utf-8"))
    assert survey["name"] == template["name"]
    assert [q["variable"] for q in survey["spec"]] == asked, "survey questions differ from awx/job_templates.yml"
    for question in survey["spec"]:
        variable = question["variable"]
        owners = [role for role, options in specs.items() if variable in options]
        assert owners, (f"{template['id']}: {variable} is in no argument_spec of the roles "
                        f"{sorted(roles)} that {template['playbook']} runs")
        spec = specs[owners[0]][variable]
        kind = spec.get("type", "str")
        assert question["type"] in SURVEY_TYPES.get(kind, set()), (
            f"{template['id']}: {variable} is {kind} in roles/{owners[0]}, survey type {question['type']}")
        if kind == "bool":
            assert question["choices"] == ["true", "false"]
            misuses = bool_misuses(owners[0], variable)
            assert misuses == [], f"{variable} is used without | bool, so a survey's \"false\" is true: {misuses}"
        elif question["type"] in {"multiplechoice", "multiselect"}:
            assert question["choices"] == [str(c) for c in spec["choices"]]
        if spec.get("no_log"):
            assert question["type"] == "password", f"{variable} is no_log; its question must be a password"
        # No default: AWX would send it on every launch and override the site's inventory
        assert "default" not in question, f"{template['id']}: {variable} has a default that overrides the inventory"
        assert question["required"] is bool(spec.get("required", False))


# ---------------------------------------------------------------------------------------------------------------
# (4) the committed surveys are what the generator makes


def test_surveys_are_not_stale():
    result = run(sys.executable, GENERATOR, "--check")
    assert result.returncode == 0, f"stale surveys (run python tests/tools/awx_surveys.py):\n{result.stderr}"


@pytest.fixture
def survey_tree(tmp_path):
    """A copy of what the generator reads and writes, to break."""
    shutil.copytree(ROOT / "awx", tmp_path / "awx")
    for spec in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        dest = tmp_path / spec.relative_to(ROOT)
        dest.parent.mkdir(parents=True)
        shutil.copy(spec, dest)
    return tmp_path


def check(root: Path):
    return run(sys.executable, GENERATOR, "--check", "--root", root)


def test_generator_check_catches_a_changed_argument_spec(survey_tree):
    assert check(survey_tree).returncode == 0
    spec_file = survey_tree / "roles" / "preflight" / "meta" / "argument_specs.yml"
    spec = load_yaml(spec_file)
    spec["argument_specs"]["main"]["options"]["preflight_model"]["description"] = "Another text."
    spec_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = check(survey_tree)
    assert result.returncode == 1
    assert "awx/surveys/preflight.json is stale" in result.stderr
    # Regenerating brings it back in line
    assert run(sys.executable, GENERATOR, "--root", survey_tree).returncode == 0
    assert "Another text." in (survey_tree / "awx" / "surveys" / "preflight.json").read_text(encoding="utf-8")
    assert check(survey_tree).returncode == 0


def test_generator_check_catches_edited_missing_and_orphan_surveys(survey_tree):
    surveys = survey_tree / "awx" / "surveys"
    (surveys / "deploy.json").write_text("{}\n", encoding="utf-8")
    (surveys / "rolling_restart.json").unlink()
    (surveys / "gone.json").write_text("{}\n", encoding="utf-8")
    result = check(survey_tree)
    assert result.returncode == 1
    assert "awx/surveys/deploy.json is stale" in result.stderr
    assert "awx/surveys/rolling_restart.json is missing" in result.stderr
    assert "awx/surveys/gone.json belongs to no job template" in result.stderr


@pytest.mark.parametrize(("role", "option", "message"), [
    ("preflight", "preflight_no_such_option", "is not an option of role preflight"),
    ("gateway", "gateway_api_keys", "is of type list"),
    ("preflight", "preflight_custom_model", "is of type dict"),
])
def test_generator_refuses_options_a_survey_cannot_carry(survey_tree, role, option, message):
    templates_file = survey_tree / "awx" / "job_templates.yml"
    data = load_yaml(templates_file)
    data["job_templates"][0]["survey"] = [{"role": role, "options": [option]}]
    templates_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = run(sys.executable, GENERATOR, "--root", survey_tree)
    assert result.returncode == 2
    assert message in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# (5) EE dependencies agree with galaxy.yml, requirements.txt and the plugins' imports

EE = load_yaml(ROOT / "execution-environment.yml")


def test_ee_collections_agree_with_galaxy_yml():
    galaxy = load_yaml(ROOT / "galaxy.yml")["dependencies"]
    ee_file = ROOT / EE["dependencies"]["galaxy"]
    ee = {c["name"]: c.get("version", "*") for c in load_yaml(ee_file)["collections"]}
    for name, version in galaxy.items():
        assert name in ee, f"{name} (a galaxy.yml dependency) is missing from {EE['dependencies']['galaxy']}"
        assert ee[name] == version, f"{name}: galaxy.yml wants {version}, the EE {ee[name]}"
    extra = set(ee) - set(galaxy)
    assert extra == set(EE_EXTRA_COLLECTIONS), f"EE collections beyond galaxy.yml: {sorted(extra)}"
    for name, user in EE_EXTRA_COLLECTIONS.items():
        assert f"{name}." in (ROOT / user).read_text(encoding="utf-8"), f"{user} does not use {name}"


def third_party_imports() -> dict:
    """Top-level modules imported by plugins/ that are neither the standard library nor Ansible: {module: file}."""
    found = {}
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in {"ansible", "ansible_collections", "__future__"}:
                    continue
                found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_ee_python_requirements_cover_the_plugins_imports():
    ee_reqs = {requirement_name(line) for line in requirement_lines(ROOT / EE["dependencies"]["python"])}
    controller = {requirement_name(line) for line in requirement_lines(ROOT / "requirements.txt")}
    distributions = importlib.metadata.packages_distributions()
    imported = third_party_imports()
    assert "pynvml" in imported and "cryptography" in imported, imported
    needed = set()
    for module, where in imported.items():
        dists = distributions.get(module)
        assert dists, f"{module} (imported by {where}) is not installed here, so its package is unknown"
        dist = canonical(dists[0])
        needed.add(dist)
        assert dist in ee_reqs, f"{dist} (import {module} in {where}) is missing from {EE['dependencies']['python']}"
    unexplained = ee_reqs - needed - controller
    assert unexplained == set(), f"EE Python packages not imported by plugins/ nor in requirements.txt: {unexplained}"


def test_ee_ansible_core_range_is_the_controllers():
    lines = requirement_lines(ROOT / "requirements.txt")
    controller = [line for line in lines if requirement_name(line) == "ansible-core"]
    assert controller, "requirements.txt pins no ansible-core"
    assert EE["dependencies"]["ansible_core"]["package_pip"].replace(" ", "") == controller[0].replace(" ", "")


def test_ee_system_packages_give_the_ssh_client():
    bindep = (ROOT / EE["dependencies"]["system"]).read_text(encoding="utf-8")
    assert re.search(r"^openssh-clients\s+\[platform:rpm\]", bindep, re.M)


# ---------------------------------------------------------------------------------------------------------------
# (1) ansible-builder create makes a build context


def test_ansible_builder_create_makes_a_build_context(tmp_path):
    builder = BIN / "ansible-builder"
    assert builder.exists(), "ansible-builder is missing: pip install -r requirements-dev.txt"
    # The EE definition and its dependency files, as the repository lays them out, and the collection tarball
    shutil.copy(ROOT / "execution-environment.yml", tmp_path)
    shutil.copytree(ROOT / "awx" / "ee", tmp_path / "awx" / "ee")
    built = run(BIN / "ansible-galaxy", "collection", "build", "--output-path", tmp_path / "build" / "ee", ROOT)
    assert built.returncode == 0, built.stderr
    version = load_yaml(ROOT / "galaxy.yml")["version"]

    result = run(builder, "create", "-f", "execution-environment.yml", "--context", "context", "-v", "3",
                 cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "No matches" not in output, f"a file of additional_build_files is missing:\n{output}"

    context = tmp_path / "context"
    containerfile = (context / "Containerfile").read_text(encoding="utf-8")
    for name, source in (("requirements.yml", "galaxy"), ("requirements.txt", "python"), ("bindep.txt", "system")):
        copied = context / "_build" / name
        assert copied.is_file(), f"{copied} is missing"
        assert copied.read_text(encoding="utf-8") == (ROOT / EE["dependencies"][source]).read_text(encoding="utf-8")
    tarball = context / "_build" / "onprem" / f"onprem-deepseek-{version}.tar.gz"
    assert tarball.is_file(), f"the collection tarball did not reach the context: {sorted(context.rglob('*'))}"
    assert f'ARG EE_BASE_IMAGE="{EE["images"]["base_image"]["name"]}"' in containerfile
    assert "ansible-galaxy collection install" in containerfile and "-r requirements.yml" in containerfile
    assert "/build/onprem/onprem-deepseek-*.tar.gz" in containerfile
    for script in ("assemble", "install-from-bindep", "introspect.py", "check_ansible", "entrypoint"):
        assert (context / "_build" / "scripts" / script).is_file(), script


# ---------------------------------------------------------------------------------------------------------------
# playbooks/awx_configure.yml


def ansible_env():
    collections = os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(ROOT / "build" / "collections"))
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_COLLECTIONS_PATH=collections,
                ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_RETRY_FILES_ENABLED="0")


@pytest.mark.parametrize("playbook", ["playbooks/awx_configure.yml", "playbooks/health_check.yml"])
def test_playbook_syntax(playbook):
    result = run(BIN / "ansible-playbook", "--syntax-check", "-i", "localhost,", playbook, env=ansible_env())
    assert result.returncode == 0, result.stdout + result.stderr


def test_awx_configure_refuses_to_run_without_a_controller():
    """Without a controller address it stops before any API call, and says what to set."""
    env = {k: v for k, v in ansible_env().items() if not k.startswith(("CONTROLLER_", "TOWER_"))}
    result = run(BIN / "ansible-playbook", "-i", "localhost,", "-c", "local", "playbooks/awx_configure.yml", env=env)
    assert result.returncode != 0
    assert "CONTROLLER_HOST" in result.stdout


# ---------------------------------------------------------------------------------------------------------------
# playbooks/health_check.yml against a real mock engine, a real nginx and a real Prometheus on 127.0.0.1

NGINX_CONF = """
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;
  uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
  server {{
    listen 127.0.0.1:{port};
    location = /healthz {{ default_type application/json; return 200 '{{"status":"ok"}}\\n'; }}
  }}
}}
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    if not (os.path.exists(PROMETHEUS) and os.path.exists(NGINX)):
        pytest.skip("the Debian packages prometheus and nginx are needed")
    work = tmp_path_factory.mktemp("health-check")
    engine_port, gateway_port, prom_port = free_ports(3)
    (work / "tmp").mkdir()
    (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, port=gateway_port), encoding="utf-8")
    conf_dir = work / "nginx" / "onprem-deepseek"
    conf_dir.mkdir(parents=True)
    upstream = conf_dir / "upstream.conf"
    (work / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{prom_port}"]}]},
            {"job_name": "engine", "static_configs": [{"targets": [f"127.0.0.1:{engine_port}"]}]},
        ]}), encoding="utf-8")
    engine = Process([sys.executable, MOCK_ENGINE, "--host", "127.0.0.1", "--port", engine_port,
                      "--served-model-name", "deepseek-r1-mock"], work / "engine.log")
    procs = [
        engine,
        Process([NGINX, "-c", work / "nginx.conf", "-p", work, "-g", "daemon off;"], work / "nginx.log"),
        Process([PROMETHEUS, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"], work / "prometheus.log"),
    ]
    # Two names for this machine, so that a failed gateway does not keep the monitoring play from running
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {
        "hosts": {"gateway1": local, "monitor1": local},
        "children": {"gateways": {"hosts": {"gateway1": {}}}, "monitoring": {"hosts": {"monitor1": {}}}},
        "vars": {"gateway_http_port": gateway_port, "gateway_conf_dir": str(work / "nginx"),
                 "gateway_listen_addresses": ["127.0.0.1"], "monitoring_prometheus_port": prom_port,
                 "inference_health_probe_timeout": 3},
    }}
    (work / "inventory.json").write_text(json.dumps(inventory), encoding="utf-8")
    try:
        for proc in procs:
            proc.start()
        wait_http(f"http://127.0.0.1:{engine_port}/health", proc=engine.proc)
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz", proc=procs[1].proc)
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready", timeout=60, proc=procs[2].proc)
        yield {"work": work, "upstream": upstream, "engine": engine, "engine_port": engine_port,
               "prom_port": prom_port}
    finally:
        for proc in reversed(procs):
            proc.stop()


def set_upstream(live, *, drained=False):
    down = " down" if drained else ""
    live["upstream"].write_text(
        "upstream onprem_deepseek_engines {\n"
        f"    server 127.0.0.1:{live['engine_port']} weight=1 max_fails=3 fail_timeout=10s{down}; # host=node1\n"
        "}\n", encoding="utf-8")


def health_check(live):
    result = run(BIN / "ansible-playbook", "-i", live["work"] / "inventory.json", "playbooks/health_check.yml",
                 "-e", "ansible_become=false", env=ansible_env(), timeout=180)
    # The callback folds long messages over lines: compare with single spaces
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def wait_target(live, health):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        url = f"http://127.0.0.1:{live['prom_port']}/api/v1/targets?state=active"
        with urllib.request.urlopen(url, timeout=5) as answer:
            targets = json.loads(answer.read())["data"]["activeTargets"]
        if {t["health"] for t in targets if t["labels"]["job"] == "engine"} == {health}:
            return
        time.sleep(0.5)
    raise AssertionError(f"the engine target did not become {health} in Prometheus")


def test_health_check_passes_on_a_healthy_stack(live):
    set_upstream(live)
    wait_target(live, "up")
    rc, output = health_check(live)
    assert rc == 0, output
    assert re.search(r"gateway1 : ok=\d+ changed=0 unreachable=0 failed=0", output), output
    assert re.search(r"monitor1 : ok=\d+ changed=0 unreachable=0 failed=0", output), output


def test_health_check_fails_on_a_drained_engine(live):
    set_upstream(live, drained=True)
    rc, output = health_check(live)
    set_upstream(live)
    assert rc != 0, output
    assert "gateway1: drained: node1;" in output, output


def test_health_check_fails_when_the_engine_is_down(live):
    set_upstream(live)
    live["engine"].stop()
    try:
        wait_target(live, "down")
        rc, output = health_check(live)
    finally:
        live["engine"].start()
        wait_http(f"http://127.0.0.1:{live['engine_port']}/health", proc=live["engine"].proc)
    assert rc != 0, output
    assert f"gateway1: engine node1 (http://127.0.0.1:{live['engine_port']}/health" in output, output
    # Every check runs: Prometheus's view is reported too
    assert f"monitor1: Prometheus target down: engine 127.0.0.1:{live['engine_port']}" in output, output
