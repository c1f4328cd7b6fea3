#!/usr/bin/env python3
"""Checks a Grafana dashboard's JSON, and optionally its PromQL against a metrics scrape.

Usage: check-dashboard.py DASHBOARD.json [--scrape SCRAPE.txt] [--self-test]

Without --scrape it checks the dashboard on its own:
  * structure: valid JSON; title, uid, integer schemaVersion and a panels list; every panel (rows'
    nested panels included) has a unique integer id, a type, a title and a gridPos of integers
    inside the 24-column grid, not overlapping its siblings; every query panel has targets, each
    with an expr and a refId unique within the panel;
  * variables: every $var, ${var} and [[var]] in the exprs, the datasource references and the
    variable queries is a templating variable (or one of Grafana's $__ globals), defined before
    any variable whose query uses it;
  * selectors: where a query variable lists a label's values (label_values(..., LABEL)), every
    metric selector in the panels filters on LABEL with that variable, with =~ when the variable
    takes several values (multi or All);
  * histogram_quantile keeps `le` in the aggregations inside it.
With --scrape SCRAPE.txt (Prometheus or OpenMetrics text, as a /metrics endpoint serves it) it
also checks that every metric the queries name is in the scrape (a `# TYPE` line or a sample; an
OpenMetrics counter `x` has samples `x_total`, a histogram `x` has `x_bucket`, `x_sum` and
`x_count`), that every label the queries filter or group on, other than the labels Prometheus
attaches to a target (TARGET_LABELS), is on that metric's samples, and that rate(), irate() and
increase() read counters or histogram series, never gauges.

Prints every problem found and exits 1; otherwise prints a summary of the metrics checked.
--self-test (with --scrape) instead makes known mistakes in copies of the two files (MUTATIONS)
and fails unless each is reported. Standard library only.
"""

import argparse
import json
import re
import sys

# Labels Prometheus (a Prometheus Operator PodMonitor) attaches to every scraped series, so they
# are never in a scrape: the target's namespace, pod, container and endpoint, job and instance,
# and the podTargetLabels of charts/loadgate/templates/runner-podmonitor.yaml.
TARGET_LABELS = {
    "namespace",
    "pod",
    "container",
    "endpoint",
    "job",
    "instance",
    "loadgate_dev_loadtest",
    "loadgate_dev_profile",
}

GRID_COLUMNS = 24

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio",
}
BINARY_KEYWORDS = {"and", "or", "unless", "bool", "atan2"}
MATCHING_KEYWORDS = {"on", "ignoring", "group_left", "group_right"}
RATE_FUNCTIONS = {"rate", "irate", "increase"}
# Panel types that show no query results, so need no targets.
NO_QUERY_PANELS = {"row", "text", "news", "dashlist", "welcome", "alertlist", "annolist"}

# Suffixes a family's samples carry, by family type (Prometheus text and OpenMetrics).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("_sum", "_count", "_created"),
    "info": ("_info",),
}

VAR_RE = re.compile(r"\$\{(\w+)(?:[:.][^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


def var_refs(text):
    """Names of the Grafana variables a string references."""
    return [a or b or c for a, b, c in VAR_RE.findall(text)]


def is_global_var(name):
    return name.startswith("__") or name in {"timeFilter", "interval"}


# --- PromQL ---------------------------------------------------------------------------------

TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$\w+)
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>,(){}\[\]@])
    """,
    re.VERBOSE,
)


class PromQLError(Exception):
    pass


def tokenize(expr):
    tokens = []
    pos = 0
    while pos < len(expr):
        m = TOKEN_RE.match(expr, pos)
        if not m:
            raise PromQLError(f"cannot read {expr[pos:pos + 20]!r} (offset {pos})")
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue
        tokens.append((kind, m.group()))
    return tokens


def unquote(s):
    if s.startswith("`"):
        return s[1:-1]
    body = s[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


class Selector:
    def __init__(self, name, matchers, rate_fn):
        self.name = name  # metric name, or None for {__name__...}-less selectors
        self.matchers = matchers  # [(label, op, value)]
        self.rate_fn = rate_fn  # rate/irate/increase when the selector is its direct argument


class Query:
    """What one PromQL expression reads: its selectors and the labels it groups or matches on."""

    def __init__(self, expr):
        self.selectors = []
        # (labels, selectors in scope, what): labels some selector in scope must carry.
        self.label_uses = []
        self.problems = []
        self._parse(tokenize(expr))

    def _label_list(self, tokens, i):
        """Reads `( a, b )` at tokens[i]; returns (labels, index after it)."""
        if i >= len(tokens) or tokens[i][1] != "(":
            return [], i
        labels = []
        i += 1
        while i < len(tokens) and tokens[i][1] != ")":
            kind, text = tokens[i]
            if kind == "ident":
                labels.append(text)
            elif kind == "string":
                labels.append(unquote(text))
            elif text != ",":
                raise PromQLError(f"unexpected {text!r} in a label list")
            i += 1
        if i >= len(tokens):
            raise PromQLError("unclosed label list")
        return labels, i + 1

    def _matchers(self, tokens, i):
        """Reads `{ l op "v", ... }` at tokens[i] (the `{`); returns (matchers, index after)."""
        matchers = []
        i += 1
        while i < len(tokens) and tokens[i][1] != "}":
            if tokens[i][1] == ",":
                i += 1
                continue
            if i + 2 >= len(tokens):
                raise PromQLError("unclosed label matchers")
            (k1, label), (_, op), (k3, value) = tokens[i], tokens[i + 1], tokens[i + 2]
            if k1 == "string":  # a quoted metric name: {"metric.name", l="v"}
                matchers.append(("__name__", "=", unquote(label)))
                i += 1
                continue
            if k1 != "ident" or op not in ("=", "!=", "=~", "!~") or k3 != "string":
                raise PromQLError(f"bad label matcher near {label!r} {op!r}")
            matchers.append((label, op, unquote(value)))
            i += 3
        if i >= len(tokens):
            raise PromQLError("unclosed label matchers")
        return matchers, i + 1

    def _parse(self, tokens):
        stack = []  # open parentheses: dicts with kind (agg, func, paren), name, first selector
        pending_agg = None  # an aggregation whose `by (...)` comes before its argument
        closed_agg = None  # the aggregation just closed, for a `by (...)` after its argument
        matching = []  # labels of on()/ignoring()/group_left()/group_right()
        i = 0
        while i < len(tokens):
            kind, text = tokens[i]
            nxt = tokens[i + 1][1] if i + 1 < len(tokens) else None
            just_closed, closed_agg = closed_agg, None
            if kind == "ident" and text in ("by", "without"):
                labels, i = self._label_list(tokens, i + 1)
                target = pending_agg or just_closed
                if target is None:
                    raise PromQLError(f"{text} (...) outside an aggregation")
                target["grouping"] = (text, labels)
                if just_closed is not None:
                    self._close_agg(just_closed)
                continue
            if just_closed is not None:
                self._close_agg(just_closed)
            if kind == "ident" and text in MATCHING_KEYWORDS:
                labels, i = self._label_list(tokens, i + 1)
                matching.extend(labels)
                continue
            if kind == "ident" and text in BINARY_KEYWORDS:
                i += 1
                continue
            if kind == "ident" and text == "offset":
                i += 2 if nxt != "-" else 3
                continue
            if kind == "ident" and text.lower() in ("inf", "nan"):
                i += 1
                continue
            if kind == "ident" and text in AGGREGATIONS and nxt != "{" and nxt != "[":
                ctx = {"kind": "agg", "name": text, "grouping": None}
                if nxt == "(":
                    stack.append(self._open(ctx, stack))
                    i += 2
                else:
                    pending_agg = ctx
                    i += 1
                continue
            if kind == "ident" and nxt == "(":
                stack.append(self._open({"kind": "func", "name": text}, stack))
                i += 2
                continue
            if kind == "ident" or text == "{":
                name = text if kind == "ident" else None
                matchers = []
                if kind == "ident":
                    i += 1
                if i < len(tokens) and tokens[i][1] == "{":
                    matchers, i = self._matchers(tokens, i)
                if name is None:
                    name = next((v for l, op, v in matchers if l == "__name__" and op == "="), None)
                top = stack[-1] if stack else None
                direct = top is not None and top["kind"] == "func" and top["first"] == len(self.selectors)
                rate_fn = top["name"] if direct and top["name"] in RATE_FUNCTIONS else None
                self.selectors.append(Selector(name, matchers, rate_fn))
                continue
            if text == "[":  # a range or subquery: durations and $__rate_interval, no names
                depth = 0
                while i < len(tokens):
                    depth += {"[": 1, "]": -1}.get(tokens[i][1], 0)
                    i += 1
                    if depth == 0:
                        break
                continue
            if text == "(":
                if pending_agg is not None:
                    stack.append(self._open(pending_agg, stack))
                    pending_agg = None
                else:
                    stack.append(self._open({"kind": "paren", "name": None}, stack))
                i += 1
                continue
            if text == ")":
                if not stack:
                    raise PromQLError("unbalanced )")
                ctx = stack.pop()
                ctx["last"] = len(self.selectors)
                if ctx["kind"] == "agg":
                    closed_agg = ctx
                i += 1
                continue
            i += 1  # numbers, strings, operators, variables outside selectors
        if closed_agg is not None:
            self._close_agg(closed_agg)
        if stack or pending_agg is not None:
            raise PromQLError("unbalanced (")
        if matching:
            self.label_uses.append((matching, self.selectors, "on/ignoring/group_*"))

    def _open(self, ctx, stack):
        ctx["first"] = len(self.selectors)
        ctx["in_histogram_quantile"] = any(
            c["kind"] == "func" and c["name"] == "histogram_quantile" for c in stack
        ) or (ctx["kind"] == "func" and ctx["name"] == "histogram_quantile")
        return ctx

    def _close_agg(self, ctx):
        scope = self.selectors[ctx["first"]:ctx["last"]]
        how, labels = ctx["grouping"] or (None, [])
        if how == "by":
            self.label_uses.append((labels, scope, f"{ctx['name']} by"))
        if ctx["in_histogram_quantile"] and ctx["name"] != "histogram_quantile":
            reads_buckets = any(s.name and s.name.endswith("_bucket") for s in scope)
            keeps_le = (how == "by" and "le" in labels) or (how == "without" and "le" not in labels)
            if reads_buckets and not keeps_le:
                self.problems.append(
                    f"{ctx['name']} inside histogram_quantile drops the le label (add it to by (...))"
                )


def split_args(text):
    """Splits a function's argument text at top-level commas."""
    args, depth, cur, quote = [], 0, "", None
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
            continue
        cur += ch
    args.append(cur.strip())
    return args


def variable_query(var):
    """A query variable's query text (string or {query: ...})."""
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    if not q:
        q = var.get("definition")
    return q if isinstance(q, str) else ""


def parse_variable_query(text):
    """(PromQL expression or None, label or None) of a Prometheus variable query."""
    m = re.fullmatch(r"\s*label_values\s*\((.*)\)\s*", text, re.S)
    if m:
        args = split_args(m.group(1))
        if len(args) == 2:
            return args[0], args[1]
        return None, args[0]
    m = re.fullmatch(r"\s*query_result\s*\((.*)\)\s*", text, re.S)
    if m:
        return m.group(1), None
    return None, None


# --- scrape ---------------------------------------------------------------------------------

SAMPLE_RE = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{)?")
LABEL_RE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,)?')


class Scrape:
    def __init__(self, path):
        self.types = {}  # family -> type, from # TYPE lines
        self.samples = {}  # sample name -> set of label names seen on it
        self.problems = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                if line.startswith("#"):
                    parts = line.split(None, 3)
                    if len(parts) >= 4 and parts[1] == "TYPE":
                        self.types[parts[2]] = parts[3].strip()
                    continue
                self._sample(path, n, line)

    def _sample(self, path, n, line):
        m = SAMPLE_RE.match(line)
        if not m:
            self.problems.append(f"{path}:{n}: not a sample line: {line!r}")
            return
        name, labels, pos = m.group(1), set(), m.end()
        if m.group(2):
            while True:
                lm = LABEL_RE.match(line, pos)
                if not lm:
                    break
                labels.add(lm.group(1))
                pos = lm.end()
            rest = line[pos:].lstrip()
            if not rest.startswith("}"):
                self.problems.append(f"{path}:{n}: unreadable labels: {line!r}")
                return
        self.samples.setdefault(name, set()).update(labels)

    def family(self, name):
        """(family name, type) of a sample name, or (None, None) when the scrape has neither."""
        if name in self.types:
            return name, self.types[name]
        for typ, suffixes in SUFFIXES.items():
            for suffix in suffixes:
                base = name[: -len(suffix)]
                if name.endswith(suffix) and self.types.get(base) == typ:
                    return base, typ
        if name in self.samples:
            return name, "untyped"
        return None, None


# --- dashboard ------------------------------------------------------------------------------


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def walk_panels(panels, where, problems):
    """Yields (panel, siblings-group key) for every panel, rows' nested panels included."""
    for idx, panel in enumerate(panels):
        if not isinstance(panel, dict):
            problems.append(f"{where}[{idx}]: not an object")
            continue
        yield panel, where
        nested = panel.get("panels")
        if nested is not None:
            if not isinstance(nested, list):
                problems.append(f"panel {panel.get('id')}: panels is not a list")
                continue
            if panel.get("type") != "row":
                problems.append(f"panel {panel.get('id')}: only rows nest panels")
            yield from walk_panels(nested, f"row {panel.get('id')}", problems)


def check(dashboard_path, scrape_path, absent_ok=()):
    problems = []
    try:
        with open(dashboard_path, encoding="utf-8") as f:
            dash = json.load(f)
    except OSError as e:
        return [f"{dashboard_path}: {e}"], None
    except json.JSONDecodeError as e:
        return [f"{dashboard_path}: not valid JSON: {e}"], None
    if not isinstance(dash, dict):
        return [f"{dashboard_path}: not a JSON object"], None

    for key in ("title", "uid"):
        if not isinstance(dash.get(key), str) or not dash[key].strip():
            problems.append(f"dashboard {key} missing or empty")
    if isinstance(dash.get("uid"), str) and len(dash["uid"]) > 40:
        problems.append(f"dashboard uid {dash['uid']!r} is longer than 40 characters")
    if not is_int(dash.get("schemaVersion")):
        problems.append("dashboard schemaVersion missing or not an integer")
    panels = dash.get("panels")
    if not isinstance(panels, list) or not panels:
        problems.append("dashboard panels missing, empty or not a list")
        panels = []

    # Variables: names, order, and which label each label_values variable stands for.
    variables = dash.get("templating", {}).get("list", [])
    if not isinstance(variables, list):
        problems.append("templating.list is not a list")
        variables = []
    defined, label_vars, queries = {}, {}, []
    for idx, var in enumerate(variables):
        name = var.get("name") if isinstance(var, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(f"templating variable {idx}: no name")
            continue
        if name in defined:
            problems.append(f"templating variable {name!r} defined twice")
        if not isinstance(var.get("type"), str):
            problems.append(f"templating variable {name!r}: no type")
        texts = [json.dumps(var.get("datasource"))]
        if var.get("type") == "query":
            qtext = variable_query(var)
            texts.append(qtext)
            expr, label = parse_variable_query(qtext)
            if expr:
                queries.append((f"variable {name!r}", expr))
            if label:
                label_vars[name] = (label, bool(var.get("multi") or var.get("includeAll")))
        for ref in (r for t in texts for r in var_refs(t)):
            if not is_global_var(ref) and ref not in defined:
                problems.append(
                    f"variable {name!r} uses ${ref}, which is not defined before it"
                )
        defined[name] = var

    # Panels: ids, grid, targets.
    ids, boxes, panel_queries = {}, {}, []
    n_panels = 0
    for panel, group in walk_panels(panels, "panels", problems):
        n_panels += 1
        pid = panel.get("id")
        label = f"panel {pid} {panel.get('title')!r}"
        if not is_int(pid):
            problems.append(f"{label}: id missing or not an integer")
        elif pid in ids:
            problems.append(f"{label}: id also used by {ids[pid]!r}")
        else:
            ids[pid] = panel.get("title")
        ptype = panel.get("type")
        if not isinstance(ptype, str) or not ptype:
            problems.append(f"{label}: type missing")
        if not isinstance(panel.get("title"), str) or not panel["title"].strip():
            problems.append(f"{label}: title missing or empty")
        pos = panel.get("gridPos")
        if not isinstance(pos, dict) or not all(is_int(pos.get(k)) for k in "xywh"):
            problems.append(f"{label}: gridPos needs integer x, y, w and h")
        elif pos["x"] < 0 or pos["y"] < 0 or pos["w"] < 1 or pos["h"] < 1:
            problems.append(f"{label}: gridPos {pos} has a negative position or an empty size")
        elif pos["x"] + pos["w"] > GRID_COLUMNS:
            problems.append(f"{label}: gridPos x + w = {pos['x'] + pos['w']} > {GRID_COLUMNS}")
        else:
            box = (pos["x"], pos["y"], pos["x"] + pos["w"], pos["y"] + pos["h"])
            for other_label, o in boxes.get(group, []):
                if box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3]:
                    problems.append(f"{label}: overlaps {other_label}")
            boxes.setdefault(group, []).append((label, box))
        for ref in var_refs(json.dumps(panel.get("datasource"))):
            if not is_global_var(ref) and ref not in defined:
                problems.append(f"{label}: datasource uses undefined variable ${ref}")
        targets = panel.get("targets")
        if ptype in NO_QUERY_PANELS and not targets:
            continue
        if not isinstance(targets, list) or not targets:
            problems.append(f"{label}: no targets")
            continue
        refids = set()
        for t_idx, target in enumerate(targets):
            if not isinstance(target, dict):
                problems.append(f"{label} target {t_idx}: not an object")
                continue
            ref = target.get("refId")
            where = f"{label} target {ref or t_idx}"
            if not isinstance(ref, str) or not ref:
                problems.append(f"{where}: refId missing")
            elif ref in refids:
                problems.append(f"{where}: refId used twice in the panel")
            refids.add(ref)
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.append(f"{where}: expr missing or empty")
                continue
            for r in var_refs(json.dumps(target.get("datasource"))) + var_refs(expr):
                if not is_global_var(r) and r not in defined:
                    problems.append(f"{where}: uses undefined variable ${r}")
            panel_queries.append((where, expr))

    # PromQL: parse every query; panel selectors filter on the label_values variables.
    parsed = []
    for where, expr in queries + panel_queries:
        try:
            q = Query(expr)
        except PromQLError as e:
            problems.append(f"{where}: cannot parse PromQL: {e}")
            continue
        problems.extend(f"{where}: {p}" for p in q.problems)
        if not q.selectors:
            problems.append(f"{where}: reads no metric")
        parsed.append((where, q))
        if where.startswith("variable "):
            continue
        for s in q.selectors:
            for var, (lbl, multi) in label_vars.items():
                uses = [(op, v) for l, op, v in s.matchers if l == lbl and var in var_refs(v)]
                if not uses:
                    problems.append(f"{where}: {s.name or '{...}'} does not filter on {lbl} by ${var}")
                elif multi and any(op != "=~" for op, _ in uses):
                    problems.append(
                        f"{where}: {s.name} matches {lbl} with {uses[0][0]} but ${var} takes "
                        "several values (multi or All): use =~"
                    )

    metrics = {}  # metric name as queried -> (labels it is filtered on, labels grouped by)
    for where, q in parsed:
        for s in q.selectors:
            if s.name:
                metrics.setdefault(s.name, (set(), set()))[0].update(
                    l for l, _, _ in s.matchers if l != "__name__"
                )
        for labels, scope, _ in q.label_uses:
            for s in scope:
                if s.name:
                    metrics[s.name][1].update(labels)

    if scrape_path is None:
        return problems, (dash, n_panels, len(panel_queries), metrics, None)

    try:
        scrape = Scrape(scrape_path)
    except OSError as e:
        return problems + [f"{scrape_path}: {e}"], None
    problems.extend(scrape.problems)
    if not scrape.samples and not scrape.types:
        problems.append(f"{scrape_path}: no metrics in it")

    families = {}
    for where, q in parsed:
        for s in q.selectors:
            if not s.name:
                continue
            family, typ = scrape.family(s.name)
            if family is None:
                if not any(s.name.startswith(a) for a in absent_ok):
                    problems.append(f"{where}: {s.name} is not in {scrape_path}")
                continue
            families.setdefault(family, (typ, set()))[1].add(s.name)
            have = scrape.samples.get(s.name)
            wanted = {l for l, _, _ in s.matchers} - TARGET_LABELS - {"__name__"}
            if wanted and have is None:
                problems.append(
                    f"{where}: {s.name} has no samples in {scrape_path} to check labels "
                    f"{sorted(wanted)} on"
                )
            elif wanted - have:
                problems.append(
                    f"{where}: {s.name} is filtered on {sorted(wanted - have)}, which its samples "
                    f"in {scrape_path} lack (they have {sorted(have) or 'no labels'})"
                )
            if s.rate_fn and typ == "gauge":
                problems.append(f"{where}: {s.rate_fn}() of {s.name}, a gauge")
        for labels, scope, what in q.label_uses:
            named = [s.name for s in scope if s.name and scrape.family(s.name)[0]]
            for lbl in labels:
                if lbl in TARGET_LABELS or not named:
                    continue
                if not any(lbl in scrape.samples.get(n, set()) for n in named):
                    problems.append(
                        f"{where}: {what} ({lbl}) but no metric it reads has {lbl} in "
                        f"{scrape_path} ({', '.join(sorted(set(named)))})"
                    )
    return problems, (dash, n_panels, len(panel_queries), metrics, families)


# Mistakes --self-test makes in a copy of the dashboard or the scrape, each of which must be
# reported: (what, "dashboard" or "scrape", text replaced everywhere, its replacement, words the
# report must contain).
MUTATIONS = [
    ("a typo in a metric name", "dashboard", "loadgate_runner_users{", "loadgate_runner_user{", "is not in"),
    ("grouping by a label the metric lacks", "dashboard", "by (task, reason)", "by (task, error)", "(error)"),
    ("histogram_quantile over a sum without le", "dashboard", "sum by (le) (", "sum (", "drops the le"),
    ("a selector without the profile filter", "dashboard", ', loadgate_dev_profile=~\\"$profile\\"', "",
     "does not filter on loadgate_dev_profile"),
    ("= on a multi-value variable", "dashboard", "loadgate_dev_profile=~", "loadgate_dev_profile=", "use =~"),
    ("an undefined variable", "dashboard", '\\"$namespace\\"', '\\"$ns\\"', "undefined variable $ns"),
    ("rate() of a gauge", "dashboard", "rate(loadgate_runner_requests_total{", "rate(loadgate_runner_users{",
     "a gauge"),
    ("a panel wider than the grid", "dashboard", '"w": 12,', '"w": 25,', "> 24"),
    ("a repeated panel id", "dashboard", '"id": 2,', '"id": 1,', "id also used"),
    ("a repeated refId", "dashboard", '"refId": "B"', '"refId": "A"', "refId used twice"),
    ("a dashboard that is not JSON", "dashboard", '"uid": "loadgate-run"', '"uid": loadgate-run',
     "not valid JSON"),
    ("a label the runner renamed", "scrape", ",reason=", ",why=", "reason"),
    ("a metric family the runner dropped", "scrape", "loadgate_runner_budget_p95_seconds",
     "loadgate_runner_budget_p95", "is not in"),
]


def self_test(dashboard_path, scrape_path):
    """Checks that the dashboard and scrape pass, and that each of MUTATIONS is reported."""
    import os
    import tempfile

    problems, _ = check(dashboard_path, scrape_path)
    if problems:
        print("self-test: the files given must pass first:")
        for p in problems:
            print(f"  {p}")
        return 1
    originals = {}
    for kind, path in (("dashboard", dashboard_path), ("scrape", scrape_path)):
        with open(path, encoding="utf-8") as f:
            originals[kind] = f.read()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for what, kind, old, new, expect in MUTATIONS:
            if old not in originals[kind]:
                print(f"self-test: FAIL {what}: {old!r} is not in the {kind} to change")
                failed += 1
                continue
            texts = dict(originals)
            texts[kind] = texts[kind].replace(old, new)
            paths = {}
            for k, text in texts.items():
                paths[k] = os.path.join(tmp, k)
                with open(paths[k], "w", encoding="utf-8") as f:
                    f.write(text)
            problems, _ = check(paths["dashboard"], paths["scrape"])
            if any(expect in p for p in problems):
                print(f"self-test: ok   {what}: reported")
            else:
                print(f"self-test: FAIL {what}: no problem mentioning {expect!r} in {problems}")
                failed += 1
    print(f"self-test: {len(MUTATIONS) - failed} of {len(MUTATIONS)} mistakes reported")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dashboard", help="the dashboard's JSON file")
    parser.add_argument("--scrape", help="a metrics scrape (Prometheus/OpenMetrics text) to check the queries against")
    parser.add_argument("--absent-ok", action="append", default=[], metavar="PREFIX",
                        help="metrics named so may be missing from the scrape (e.g. the LLM ones of an embedding run)")
    parser.add_argument("--self-test", action="store_true",
                        help="check that the checker reports mistakes made in copies of the two files (needs --scrape)")
    args = parser.parse_args()
    if args.self_test:
        if not args.scrape:
            parser.error("--self-test needs --scrape")
        return self_test(args.dashboard, args.scrape)
    problems, result = check(args.dashboard, args.scrape, args.absent_ok)
    if problems:
        for p in problems:
            print(f"check-dashboard: {p}")
        print(f"check-dashboard: {args.dashboard}: {len(problems)} problem(s)")
        return 1
    dash, n_panels, n_queries, metrics, families = result
    print(
        f"{args.dashboard}: {dash['title']!r} (uid {dash['uid']}, schemaVersion "
        f"{dash['schemaVersion']}): {n_panels} panels, {n_queries} queries, "
        f"{len(dash.get('templating', {}).get('list', []))} variables: OK"
    )
    print(f"metrics queried ({len(metrics)}):")
    for name in sorted(metrics):
        filtered, grouped = (sorted(ls - TARGET_LABELS) for ls in metrics[name])
        notes = [f"filtered on {', '.join(filtered)}"] if filtered else []
        notes += [f"grouped by {', '.join(grouped)}"] if grouped else []
        print(f"  {name}" + (f"  ({'; '.join(notes)})" if notes else ""))
    if families is not None:
        print(f"all found in {args.scrape}, as {len(families)} metric families:")
        for fam in sorted(families):
            typ, names = families[fam]
            print(f"  {fam} ({typ}): {', '.join(sorted(names))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
