"""GitOps for the environments: bump, promote, render and diff the image tag each environment runs.

``environments/<env>/version.yaml`` holds one value, ``global.image.tag``; Argo CD deploys whatever it says on main.
The GitHub workflows (.github/workflows/release.yml, promote.yml) and the Makefile (make bump, make promote,
make env-diff) call this script, so the logic lives here and tests/platform/test_gitops.py runs it for real:

  bump --env dev --tag <tag>            rewrite the tag line of one environment (an environment whose rendered
                                        manifests are checked in, platform/kubernetes/<env>, is re-rendered too)
  promote --from dev --to staging       copy the tag of one environment to the next (dev → staging → prod only)
  render --env E [--tag T] --out DIR    the environment's manifests, one file per object, at its tag or at T
  diff --env E --tag T                  unified diff of the rendered manifests, current tag → T, as Markdown
  plan-comment --env E --plan-file F    a `terraform show` output as a pull request comment (infra.yml)
  images --env E [--registry R]         the images E runs; with R, exit 1 unless all come from R
  image-copies --env E --from-registry S --registry R
                                        `source image` pairs for `az acr import` into R: what E runs at its tag,
                                        taken from S (promote.yml copies a promoted tag into the next registry)
  tag --env E / next-env --env E        print the current tag / the environment promoted from E

Invalid input (an unknown environment, a tag outside the OCI tag grammar, a promotion that skips or goes back)
exits 1 with a message and changes nothing. ``bump`` and ``promote`` print ``key=value`` lines (env, tag,
previous, changed) that a workflow appends to ``$GITHUB_OUTPUT``. Standard library only, plus the helm that
scripts/platform_tools.py provides: the workflows run it with the runner's python3, no virtualenv.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import render_manifests
from platform_tools import ROOT, ToolError, ensure_helm

# Promotion order: each environment takes the tag of the one before it.
ENVS = ("dev", "staging", "prod")
# The OCI distribution spec's tag grammar: what a registry accepts (no '+', at most 128 characters).
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# The single line of a version file a bump rewrites: `    tag: "0.1.0"` (quotes optional when read).
TAG_LINE_RE = re.compile(r"^(?P<indent>[ ]+)tag:[ ]*(?P<value>\S.*?)[ ]*$", re.MULTILINE)
# GitHub refuses a pull request body over 65,536 characters; the diff leaves room for the text around it.
DEFAULT_MAX_CHARS = 60_000


class GitOpsError(RuntimeError):
    """Invalid input or repository state; the message says what to do."""


def check_env(env: str) -> str:
    if env not in ENVS:
        raise GitOpsError(f"unknown environment {env!r}: expected one of {', '.join(ENVS)}")
    return env


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise GitOpsError(
            f"invalid image tag {tag!r}: a tag is 1-128 characters of letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-' (OCI distribution spec)"
        )
    return tag


def version_file(env: str) -> Path:
    return render_manifests.ENVIRONMENTS / check_env(env) / "version.yaml"


def _tag_line(env: str) -> tuple[str, re.Match[str]]:
    path = version_file(env)
    text = path.read_text()
    lines = list(TAG_LINE_RE.finditer(text))
    if len(lines) != 1:
        raise GitOpsError(f"{path.relative_to(ROOT)} must hold exactly one `tag:` line, found {len(lines)}")
    return text, lines[0]


def current_tag(env: str) -> str:
    _, line = _tag_line(env)
    value = line["value"]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def rendered_copy(env: str) -> Path | None:
    """platform/kubernetes/<env> when that environment's rendered manifests are checked in (dev), else None."""
    target = render_manifests.OUTPUT / env
    return target if target.is_dir() else None


def set_tag(env: str, tag: str) -> tuple[str, bool]:
    """Rewrite the tag line (comments and layout kept) and re-render a checked-in copy; (previous tag, changed).

    All or nothing: if rendering fails, the version file is put back as it was."""
    check_tag(tag)
    previous = current_tag(env)
    if previous == tag:
        return previous, False
    text, line = _tag_line(env)
    path = version_file(env)
    path.write_text(text[: line.start()] + f'{line["indent"]}tag: "{tag}"' + text[line.end() :])
    target = rendered_copy(env)
    if target is not None:
        try:
            # render_manifests writes the files (and drops stale ones); its progress line goes to stderr so
            # stdout stays the key=value lines the workflows read.
            with contextlib.redirect_stdout(sys.stderr):
                status = render_manifests.main(["--env", env])
            if status != 0:
                raise GitOpsError(f"re-rendering {target.relative_to(ROOT)} failed (see above)")
        except BaseException:
            path.write_text(text)
            raise
    return previous, True


def previous_env(env: str) -> str:
    index = ENVS.index(check_env(env))
    if index == 0:
        raise GitOpsError(f"{env} is the first environment: it takes a tag from a release (bump), not a promotion")
    return ENVS[index - 1]


def next_env(env: str) -> str:
    index = ENVS.index(check_env(env))
    if index == len(ENVS) - 1:
        raise GitOpsError(f"{env} is the last environment: nothing is promoted from it")
    return ENVS[index + 1]


def check_promotion(source: str, target: str) -> None:
    check_env(source)
    if check_env(target) == ENVS[0]:
        raise GitOpsError(f"cannot promote to {target}: it takes releases (bump), not promotions")
    expected = previous_env(target)
    if source != expected:
        raise GitOpsError(
            f"cannot promote {source} → {target}: promotion goes {' → '.join(ENVS)} one step at a time "
            f"({target} is promoted from {expected})"
        )


def render(env: str, tag: str | None = None) -> dict[str, str]:
    """The environment's manifests as scripts/render_manifests.py lays them out, at its own tag or at ``tag``."""
    extra = ("--set-string", f"global.image.tag={check_tag(tag)}") if tag is not None else ()
    return render_manifests.render(ensure_helm(), check_env(env), *extra)


def image_refs(files: dict[str, str]) -> list[str]:
    """The TaskFlow images an environment runs (from its rendered manifests), for the pull request text."""
    refs = {m for text in files.values() for m in re.findall(r"^\s+image: \"?([^\"\s]+)\"?$", text, re.MULTILINE)}
    return sorted(ref for ref in refs if re.search(r"(^|/)taskflow-[a-z]+[:@]", ref))


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks inside the text, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def diff_markdown(env: str, tag: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Markdown: what changes in the rendered manifests when ``env`` moves from its tag to ``tag``.

    At most ``max_chars`` characters: a longer diff is cut at a line boundary and says how to see the rest."""
    before_tag = current_tag(env)
    before, after = render(env), render(env, tag)
    lines: list[str] = []
    changed: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        chunk = list(
            difflib.unified_diff(
                before.get(name, "").splitlines(keepends=True),
                after.get(name, "").splitlines(keepends=True),
                fromfile=f"a/{name}" if name in before else "/dev/null",
                tofile=f"b/{name}" if name in after else "/dev/null",
            )
        )
        if chunk:
            changed.append(name)
            lines += [line if line.endswith("\n") else line + "\n" for line in chunk]
    title = f"### Rendered manifests of `{env}`: `{before_tag}` → `{tag}`\n\n"
    if not changed:
        return title + "No rendered object changes.\n"
    summary = f"{len(changed)} file(s) change: {', '.join(f'`{n}`' for n in changed)}.\n\n"
    return _fenced(title + summary, lines, "diff", max_chars, f"`make env-diff ENV={env} TAG={tag}`")


def _fenced(head: str, lines: list[str], lang: str, max_chars: int, whole: str, after: str = "") -> str:
    """``head``, then ``lines`` in a code block, then ``after``; at most ``max_chars`` characters.

    Too long, the block is cut at a line boundary and a note says how many lines it shows and where (``whole``)
    to see them all."""
    fence = _fence("".join(lines))
    opening, closing = f"{head}{fence}{lang}\n", f"{fence}\n"
    if len(opening) + sum(map(len, lines)) + len(closing) + len(after) <= max_chars:
        return opening + "".join(lines) + closing + after

    def note(shown: int) -> str:
        return (
            f"\n… truncated: {shown} of {len(lines)} lines shown (GitHub limits a comment or pull request body). "
            f"The whole text: {whole}.\n"
        )

    budget = max_chars - len(opening) - len(closing) - len(after) - len(note(len(lines)))
    if budget <= 0:
        raise GitOpsError(f"a limit of {max_chars} characters leaves no room for the text")
    kept, size = 0, 0
    while kept < len(lines) and size + len(lines[kept]) <= budget:
        size += len(lines[kept])
        kept += 1
    return opening + "".join(lines[:kept]) + closing + note(kept) + after


def plan_comment(env: str, plan: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Markdown for a pull request comment: an environment's `terraform show` output, its summary line first."""
    summary = re.search(r"^(Plan: \d+ to add, \d+ to change, \d+ to destroy\.|No changes\..*)$", plan, re.MULTILINE)
    head = (
        f"### Terraform plan: `{check_env(env)}`\n\n"
        f"**{summary.group(1) if summary else 'No summary line in the plan: read it below.'}**\n\n"
        "<details><summary>terraform show</summary>\n\n"
    )
    lines = [line + "\n" for line in plan.splitlines()]
    return _fenced(head, lines, "text", max_chars, "the job log of this plan", after="\n</details>\n")


def promotion_body(source: str, target: str, tag: str, diff: str, images: list[str]) -> str:
    path = version_file(target).relative_to(ROOT)
    refs = "\n".join(f"- `{ref}`" for ref in images) or "- (no TaskFlow image found in the rendered manifests)"
    return (
        f"Promotes **{target}** to image tag `{tag}`, the tag **{source}** runs.\n\n"
        f"This pull request changes only `{path}`. Once merged, Argo CD syncs `taskflow-{target}`; "
        "to roll back, revert it (or `make bump ENV=" + target + " TAG=<previous tag>`).\n\n"
        f"Images after the merge:\n{refs}\n\n{diff}"
    )


def _outputs(**values: str | bool) -> None:
    for key, value in values.items():
        print(f"{key}={str(value).lower() if isinstance(value, bool) else value}")


def cmd_bump(args: argparse.Namespace) -> None:
    check_env(args.env)
    previous, changed = set_tag(args.env, check_tag(args.tag))
    _outputs(env=args.env, tag=args.tag, previous=previous, changed=changed)


def cmd_promote(args: argparse.Namespace) -> None:
    target = check_env(args.to)
    source = args.source if args.source is not None else previous_env(target)
    check_promotion(source, target)
    tag = check_tag(current_tag(source))
    if args.body_file is not None:
        # Rendered before the version file changes: the diff runs from the target's current tag to the new one.
        diff = diff_markdown(target, tag, max_chars=args.max_chars - 2_000)
        args.body_file.write_text(promotion_body(source, target, tag, diff, image_refs(render(target, tag))))
    previous, changed = set_tag(target, tag)
    _outputs(env=target, source=source, tag=tag, previous=previous, changed=changed)


def cmd_render(args: argparse.Namespace) -> None:
    files = render(args.env, args.tag)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
    print(f"wrote {len(files)} files to {args.out}", file=sys.stderr)


def cmd_diff(args: argparse.Namespace) -> None:
    sys.stdout.write(diff_markdown(check_env(args.env), check_tag(args.tag), max_chars=args.max_chars))


def cmd_plan_comment(args: argparse.Namespace) -> None:
    sys.stdout.write(plan_comment(args.env, args.plan_file.read_text(), max_chars=args.max_chars))


def cmd_images(args: argparse.Namespace) -> None:
    refs = image_refs(render(args.env, args.tag))
    print("\n".join(refs))
    if args.registry is not None:
        elsewhere = [ref for ref in refs if not ref.startswith(f"{args.registry}/")]
        if elsewhere or not refs:
            raise GitOpsError(
                f"{args.env} runs images from elsewhere than {args.registry}: {', '.join(elsewhere) or 'none found'} "
                f"(global.image.registry in environments/base/values.yaml or environments/{args.env}/values.yaml)"
            )


def image_copies(env: str, source_registry: str, registry: str) -> list[tuple[str, str]]:
    """What ``az acr import`` copies so that ``env`` finds its images in its own registry: (source, image) pairs.

    Each environment has its registry (platform/terraform creates one per environment); a promotion copies the
    promoted tag from the registry of the environment before into the target's, so prod pulls only from prod's.
    """
    refs = image_refs(render(check_env(env)))
    elsewhere = [ref for ref in refs if not ref.startswith(f"{registry}/")]
    if elsewhere or not refs:
        raise GitOpsError(
            f"{env} does not pull from {registry}: {', '.join(elsewhere) or 'no images found'} "
            f"(set global.image.registry in environments/{env}/values.yaml to {registry})"
        )
    images = [ref.removeprefix(f"{registry}/") for ref in refs]
    return [(f"{source_registry}/{image}", image) for image in images]


def cmd_image_copies(args: argparse.Namespace) -> None:
    for source, image in image_copies(args.env, args.from_registry, args.registry):
        print(source, image)


def cmd_tag(args: argparse.Namespace) -> None:
    print(current_tag(check_env(args.env)))


def cmd_next_env(args: argparse.Namespace) -> None:
    print(next_env(args.env))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="gitops.py", description=(__doc__ or "").splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("bump", help="set an environment's image tag (re-renders its checked-in manifests)")
    p.add_argument("--env", required=True, help=f"one of {', '.join(ENVS)}")
    p.add_argument("--tag", required=True, help="image tag: a commit SHA or a version (OCI tag grammar)")
    p.set_defaults(func=cmd_bump)

    p = sub.add_parser("promote", help="copy the tag of an environment to the next one (dev → staging → prod)")
    p.add_argument("--from", dest="source", help="environment promoted from (default: the one before --to)")
    p.add_argument("--to", required=True, help="environment promoted to: staging or prod")
    p.add_argument("--body-file", type=Path, help="write the pull request body (summary and manifest diff) here")
    p.add_argument("--max-chars", type=int, default=65_536, help="longest body (default: GitHub's 65536)")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("render", help="write an environment's rendered manifests to a directory")
    p.add_argument("--env", required=True)
    p.add_argument("--tag", help="render at this tag instead of the version file's")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("diff", help="Markdown diff of an environment's manifests from its tag to another")
    p.add_argument("--env", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="truncate longer output")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("plan-comment", help="Markdown pull request comment of a `terraform show` output")
    p.add_argument("--env", required=True)
    p.add_argument("--plan-file", required=True, type=Path, help="the text of `terraform show -no-color tfplan`")
    p.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="truncate longer output")
    p.set_defaults(func=cmd_plan_comment)

    p = sub.add_parser("images", help="print the TaskFlow images an environment runs (after its rendered manifests)")
    p.add_argument("--env", required=True)
    p.add_argument("--tag", help="at this tag instead of the version file's")
    p.add_argument("--registry", help="exit 1 unless every image comes from this registry (e.g. x.azurecr.io)")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("image-copies", help="print `source image` pairs that copy an environment's images into R")
    p.add_argument("--env", required=True)
    p.add_argument("--from-registry", required=True, help="the registry of the environment promoted from")
    p.add_argument("--registry", required=True, help="the environment's own registry (e.g. x.azurecr.io)")
    p.set_defaults(func=cmd_image_copies)

    p = sub.add_parser("tag", help="print an environment's current image tag")
    p.add_argument("--env", required=True)
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("next-env", help="print the environment promoted from --env")
    p.add_argument("--env", required=True)
    p.set_defaults(func=cmd_next_env)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (GitOpsError, ToolError) as exc:
        print(f"gitops: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
