#!/usr/bin/python3
"""Reads the trx files of one `dotnet test` run and says whether the run proves what it claims.

usage: trx-summary.py SOLUTION TRX_DIR

Prints one row per test project of the solution (passed, failed, skipped, other) and exits 1 if any project has a
failed test, a skipped test that is not on the allow-list, a result that is neither (an error, a timeout, an abort),
or no results at all (a test host that crashed or found no tests). The allow-list is the environment variable
COORDINATOR_CI_ALLOWED_SKIPS: fully qualified test names, one per line (a theory's cases share its method's name).
"""
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

NS = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}


def test_projects(solution):
    """Names of the solution's projects that declare <IsTestProject>true</IsTestProject>."""
    root = os.path.dirname(os.path.abspath(solution))
    names = []
    with open(solution, encoding="utf-8-sig") as f:
        for m in re.finditer(r'^Project\("[^"]*"\)\s*=\s*"([^"]+)",\s*"([^"]+\.csproj)"', f.read(), re.M):
            path = os.path.join(root, m.group(2).replace("\\", "/"))
            with open(path, encoding="utf-8-sig") as p:
                if re.search(r"<IsTestProject>\s*true\s*</IsTestProject>", p.read(), re.I):
                    names.append(m.group(1))
    return names


def main():
    solution, trx_dir = sys.argv[1], sys.argv[2]
    expected = test_projects(solution)
    # The trx names a test's assembly by its path, lower-cased: back to the project's own spelling.
    spelling = {p.lower(): p for p in expected}
    allowed = {l.strip() for l in os.environ.get("COORDINATOR_CI_ALLOWED_SKIPS", "").splitlines() if l.strip()}
    counts = defaultdict(lambda: defaultdict(int))
    problems = []
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(trx_dir) for f in fs if f.endswith(".trx"))
    for trx in files:
        run = ET.parse(trx).getroot()
        tests = {}
        for ut in run.iterfind("t:TestDefinitions/t:UnitTest", NS):
            method = ut.find("t:TestMethod", NS)
            storage = ut.get("storage") or (method.get("codeBase") if method is not None else "") or ""
            project = os.path.splitext(os.path.basename(storage))[0]
            project = spelling.get(project.lower(), project)
            name = f'{method.get("className")}.{method.get("name")}' if method is not None else ut.get("name")
            tests[ut.get("id")] = (project, name)
        for r in run.iterfind("t:Results/t:UnitTestResult", NS):
            project, name = tests.get(r.get("testId"), ("(unknown)", r.get("testName")))
            outcome = r.get("outcome")
            if outcome == "Passed":
                counts[project]["passed"] += 1
            elif outcome == "Failed":
                counts[project]["failed"] += 1
                problems.append(f"failed: {project}: {r.get('testName')}")
            elif outcome == "NotExecuted":
                counts[project]["skipped"] += 1
                if name not in allowed and r.get("testName") not in allowed:
                    reason = r.findtext("t:Output/t:StdOut", "", NS) or r.findtext("t:Output/t:ErrorInfo/t:Message", "", NS)
                    problems.append(f"skipped (not on the allow-list): {project}: {r.get('testName')}"
                                    + (f": {reason.strip()}" if reason.strip() else ""))
            else:
                counts[project]["other"] += 1
                problems.append(f"{outcome}: {project}: {r.get('testName')}")

    rows = sorted(set(expected) | set(counts))
    width = max([len("project")] + [len(p) for p in rows])
    print(f"{'project':<{width}}  {'passed':>6}  {'failed':>6}  {'skipped':>7}  {'other':>5}")
    for p in rows:
        c = counts.get(p, {})
        print(f"{p:<{width}}  {c.get('passed', 0):>6}  {c.get('failed', 0):>6}  {c.get('skipped', 0):>7}  {c.get('other', 0):>5}"
              + ("" if p in counts else "  <- no results"))
        if p not in counts:
            problems.append(f"no results: {p} (is a test project of {os.path.basename(solution)}, produced no trx results)")
    print(f"({len(files)} trx file(s) in {trx_dir})")
    if problems:
        print("ci: the test run does not prove what it claims:")
        for line in problems:
            print("  " + line)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
