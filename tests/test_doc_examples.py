"""Every shell and Python example of docs/*.md and README.md runs, or is checked by a rule
stated here, so that no example drifts from the code.

The fenced ``sh``/``bash``/``shell``/``console`` and ``python`` blocks are collected from the
pages (one test per block, named ``page:line``: a new example is tested without editing a
list). The blocks of a page run in order in one working folder of their own, as a reader
follows the page (a block selected alone with -k first runs the page's blocks before it):
``recipes/`` and ``plugins/`` are the project's, ``datasets/facades`` is the shared facades
set (or, without it, the bundled edges2shoes sample as a stand-in), a run the example reads
(``runs/NAME``) is a copy of a tiny session run (a CycleGAN one where NAME says cyclegan,
monet, horse or zebra, else pix2pix), an input it translates or opens that does not exist yet
is made of bundled sample photos, and an ``--inception`` file it fetched by hand is the shared
standard one. The Python blocks of a page share one namespace.

Shell blocks: ``imtrans`` commands run in this process (click's runner), ``imtrans run`` with
tiny settings appended (:data:`TINY`, and 32 px, or 64 px pix2pix with a 6-level U-Net, where
the example sets no size). A command run must exit 0 without an ``error:`` line; a ``run`` must
say it finished at the tiny step count with a checkpoint that exists, a ``translate`` that it
wrote images, and the translate OUTPUT, an ``-o`` file and a path the command's comment names
(``# + paintings/index.html``) must exist. An ``imtrans`` command is checked statically instead
(the subcommand exists, it takes every option given, with a value it accepts, the argument
count fits, and a ``run``'s recipe loads with its ``--set`` overrides) when
:func:`static_reason` finds a reason: it downloads, needs a GPU or several processes, names
placeholders for the reader's own values (``RECIPE``, ``$FACADES``), reads checkpoints of the
official code, needs FID weights that are not here, or its block is marked
``<!-- not run: why -->`` on the line before its fence (for a block that cannot run: visible
to doc writers). Other programs are checked by rules too: ``pip install`` installs imtrans
from the clone (``-e .``, extras that pyproject.toml defines) or a local plugin folder (the
block's commands then see that plugin, installed for the suite), ``python -m pytest`` names
test files that exist, a program of :data:`OTHER_PROGRAMS` is known and not run; a program no
rule knows fails the test.

Python blocks run with ``exec``; ``print(...)  # text`` lines must print ``text``. A block
marked ``<!-- not run: ... -->`` (a sketch) is checked statically: what it imports from
imtrans exists. Run with ``-s`` to see how each block was tested.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import TINY_RUN, install_plugin

from imtrans.catalogue.plugins import components
from imtrans.cli import cli
from imtrans.errors import ImtransError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
INCEPTION = SHARED / "weights" / "fid_inception_tf2015.pt"
SAMPLES = ROOT / "imtrans" / "samples"
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
SHELL = {"sh", "bash", "shell", "console"}
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")

#: Appended to every ``imtrans run`` an example makes: two steps of tiny networks on the CPU.
TINY = {key: value for key, value in TINY_RUN.items()
        if key not in {"data.load_size", "data.crop_size"}} | {"train.max_steps": 2}
#: The sizes appended where an example sets none (conftest.train_tiny's: pix2pix needs 64 px
#: and a 6-level U-Net, the smallest that keeps its dropout).
TINY_SIZE = {"data.load_size": 36, "data.crop_size": 32}
TINY_PIX2PIX_SIZE = {"data.load_size": 72, "data.crop_size": 64, "generator.name": "unet",
                     "generator.num_downs": 6}

#: Programs other than imtrans the examples name, and why the suite does not run them.
OTHER_PROGRAMS = {
    "lint-imports": "the import contract checker (the dev extra); tests/test_layers.py runs it",
    "tensorboard": "a viewer that serves pages until stopped",
    "wandb": "talks to the Weights & Biases service",
    "mlflow": "a viewer that serves pages until stopped",
    "twine": "uploads to PyPI",
    "scontrol": "Slurm's, on a cluster",
    "unzip": "unpacks a wheel pip downloaded (the suite has its file: see provide_inception)",
    "trap": "shell built-in of a batch script", "wait": "shell built-in of a batch script",
    "kill": "shell built-in of a batch script",
}
#: Where a run's name says CycleGAN, its stand-in is the tiny CycleGAN run.
CYCLEGAN_NAME = re.compile(r"cyclegan|monet|horse|zebra", re.IGNORECASE)
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


@dataclass(frozen=True)
class Block:
    """One fenced example: its page, the line of its fence, its language, its text."""

    page: Path
    line: int
    language: str
    code: str
    not_run: str | None  # the reason of a <!-- not run: ... --> marker before the fence

    @property
    def name(self) -> str:
        return f"{self.page.name}:{self.line}"


def doc_blocks(page: Path) -> list[Block]:
    """The shell and Python blocks of ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        language = match.group(1).lower()
        if language not in SHELL | {"python"}:
            continue
        before = text[:match.start()].rstrip().rsplit("\n", 1)[-1]
        marker = NOT_RUN.search(before)
        found.append(Block(page, text.count("\n", 0, match.start()) + 1,
                           "python" if language == "python" else "shell", match.group(2),
                           marker.group(1) if marker else None))
    return found


BLOCKS = [block for page in PAGES for block in doc_blocks(page)]


# --- the working folder of a page -------------------------------------------------------


@dataclass
class Workspace:
    """A page's working folder, its Python namespace and how many of its blocks have run."""

    folder: Path
    runs: dict[str, Path]
    namespace: dict[str, object] = field(default_factory=lambda: {"__name__": "__doc__"})
    done: int = 0
    outcomes: dict[str, list[str]] = field(default_factory=dict)  # block name: per command

    def note(self, block: Block, outcome: str) -> None:
        """Record how one command (or Python block) of ``block`` was tested."""
        self.outcomes.setdefault(block.name, []).append(outcome)

    def provide_run(self, name: str) -> None:
        """Make ``runs/<name>`` exist: a copy of the tiny run its name suggests."""
        target = self.folder / "runs" / name
        if not target.exists():
            kind = "cyclegan" if CYCLEGAN_NAME.search(name) else "pix2pix"
            # Without what other tests wrote into the shared session run (an export/ whose
            # record holds the original's inodes, not the copy's): the run as trained.
            shutil.copytree(self.runs[kind], target,
                            ignore=shutil.ignore_patterns("export", "eval", "translated*"))

    def provide_inception(self, name: object) -> None:
        """Make an ``--inception`` file the example fetched by hand exist: the standard one."""
        if name is not None and not (self.folder / str(name)).exists():
            (self.folder / str(name)).symlink_to(INCEPTION)

    def provide_input(self, name: str) -> None:
        """Make an input path the example names exist: an image, a glob's match, a folder."""
        path = self.folder / name
        if "*" in name:
            base = Path(name.split("*")[0]).parent
            suffix = Path(name).suffix or ".jpg"
            _sample_images(self.folder / base, 2, suffix, nested=True)
        elif path.exists():
            return
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            path.parent.mkdir(parents=True, exist_ok=True)
            _sample_image(0, path)
        else:
            _sample_images(path, 2, ".jpg", nested=True)


def _sample_image(index: int, target: Path) -> None:
    from PIL import Image

    photos = sorted((SAMPLES / "monet2photo" / "testB").iterdir())
    with Image.open(photos[index % len(photos)]) as image:
        image.convert("RGB").save(target)


def _sample_images(folder: Path, count: int, suffix: str, *, nested: bool) -> None:
    """``count`` sample photos in ``folder``, the last one in a subfolder when ``nested``."""
    for index in range(count):
        where = folder / "more" if nested and index == count - 1 else folder
        where.mkdir(parents=True, exist_ok=True)
        _sample_image(index, where / f"sample_{index}{suffix}")


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory, pix2pix_run: Path,
               cyclegan_run: Path) -> Iterator[dict[Path, Workspace]]:
    """One working folder per page, made on first use."""
    made: dict[Path, Workspace] = {}

    class Folders(dict[Path, Workspace]):
        def __missing__(self, page: Path) -> Workspace:
            folder = tmp_path_factory.mktemp(page.stem)
            for shared in ("recipes", "plugins"):
                (folder / shared).symlink_to(ROOT / shared)
            facades = SHARED / "data" / "facades"
            (folder / "datasets").mkdir()
            (folder / "datasets" / "facades").symlink_to(
                facades if facades.is_dir() else SAMPLES / "edges2shoes")
            made[page] = self[page] = Workspace(
                folder, {"pix2pix": pix2pix_run, "cyclegan": cyclegan_run})
            return made[page]

    yield Folders()
    print("\n" + summary(made.values()))


def summary(workspaces: Iterable[Workspace]) -> str:
    """How many blocks ran, were checked statically, or both (some commands each)."""
    kinds: Counter[str] = Counter()
    lines = []
    for workspace in workspaces:
        for name, outcomes in workspace.outcomes.items():
            ran = {o == "ran" for o in outcomes}
            kind = ("ran" if ran == {True} else "checked statically" if ran == {False}
                    else "partly ran")
            kinds[kind] += 1
            lines.append(f"  {name}: {kind} ({'; '.join(dict.fromkeys(outcomes))})")
    total = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    return "\n".join(["doc examples: " + total, *lines])


@pytest.fixture(scope="module")
def installed_plugins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The folder each plugin of plugins/ is installed into, installed on first use."""

    class Installed(dict[str, Path]):
        def __missing__(self, plugin: str) -> Path:
            target = tmp_path_factory.mktemp("site-" + plugin)
            install_plugin(ROOT / "plugins" / plugin, target)
            self[plugin] = target
            return target

    return Installed()


# --- the test ---------------------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_doc_example(block: Block, workspaces: dict[Path, Workspace],
                     installed_plugins: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the block (after the page's earlier blocks, when they have not run in this session)
    or check it by its rule; fail on a command no rule covers."""
    workspace = workspaces[block.page]
    page_blocks = [b for b in BLOCKS if b.page == block.page]
    position = page_blocks.index(block)
    monkeypatch.chdir(workspace.folder)
    if INCEPTION.is_file():  # as after `imtrans eval --download-inception`
        monkeypatch.setenv("IMTRANS_INCEPTION", str(INCEPTION))
    earlier, workspace.done = page_blocks[workspace.done:position], max(workspace.done,
                                                                      position + 1)
    try:
        for before in earlier:  # only when this block runs alone (-k): the page up to here
            run_block(before, workspace, installed_plugins, monkeypatch)
        run_block(block, workspace, installed_plugins, monkeypatch)
    finally:
        components.cache_clear()  # a plugin a block installed is not seen by later tests


def run_block(block: Block, workspace: Workspace, installed_plugins: dict[str, Path],
              monkeypatch: pytest.MonkeyPatch) -> None:
    """Run one block in its page's working folder, with the plugins it names installed."""
    for plugin in _plugins_named(block.code):
        monkeypatch.syspath_prepend(str(installed_plugins[plugin]))
        monkeypatch.delenv("IMTRANS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
        components.cache_clear()
    if block.language == "python":
        run_python(block, workspace)
    else:
        for command in shell_commands(block):
            run_command(command, block, workspace)


def _plugins_named(code: str) -> list[str]:
    """The plugins of plugins/ a block names (folder, distribution or module name): the block
    runs with them installed, as its page says to do first."""
    named = []
    for folder in sorted((ROOT / "plugins").iterdir()):
        module = folder.name.replace("-", "_")
        if folder.name in code or module in code:
            named.append(folder.name)
    return named


# --- Python blocks ----------------------------------------------------------------------


def run_python(block: Block, workspace: Workspace) -> None:
    """Run the block in its page's namespace; check what it says it prints."""
    if block.not_run is not None:
        check_python_statically(block)
        workspace.note(block, f"static: {block.not_run}")
        return
    try:
        code = compile(block.code, f"{block.name}", "exec")
    except SyntaxError as exc:
        pytest.fail(f"{block.name}: not valid Python ({exc}); mark a sketch with "
                    "<!-- not run: a sketch --> before its fence")
    for name in re.findall(r"""["']runs/([\w.-]+)""", block.code):
        workspace.provide_run(name)
    for name in re.findall(r"""Image\.open\(["']([^"']+)["']\)""", block.code):
        workspace.provide_input(name)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, workspace.namespace)
    lines = [line.strip() for line in printed.getvalue().splitlines()]
    for expected in re.findall(r"^\s*print\(.*\)\s+#\s*(.+)$", block.code, re.MULTILINE):
        assert expected.strip() in lines, (
            f"{block.name}: printed {lines[-5:]}, the page says {expected.strip()!r}")
    workspace.note(block, "ran")


def check_python_statically(block: Block) -> None:
    """What a sketch imports from imtrans exists."""
    import importlib

    for module, names in re.findall(r"^from (imtrans[\w.]*) import \(?([\w, \n]+)\)?",
                                    block.code, re.MULTILINE):
        loaded = importlib.import_module(module)
        for name in filter(None, (n.strip() for n in names.split(","))):
            assert hasattr(loaded, name), f"{block.name}: {module} has no {name}"


# --- shell blocks -----------------------------------------------------------------------


@dataclass
class Command:
    """One simple command of a shell block: its words, environment prefix and comment."""

    words: list[str]
    env: dict[str, str]
    comment: str
    placeholders: list[str]


def shell_commands(block: Block) -> list[Command]:
    """The simple commands of a shell block, in order, shell variables the block sets
    expanded (a variable it does not set is a placeholder for the reader's own value)."""
    code = re.sub(r"\\\n", "", block.code)  # line continuations
    if re.search(r"^\$ ", code, re.MULTILINE):  # a console session: the prompted lines
        code = "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ "))
    variables: dict[str, str] = {}
    commands = []
    for line in code.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                          lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), line)
        unset = re.findall(r"\$\{?\w+|\$!", expanded)  # still there: the reader's own values
        comment = line.split("  #", 1)[1].strip() if "  #" in line else ""
        lexer = shlex.shlex(expanded, posix=True, punctuation_chars="&;|")
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, "&&"]:
            if token in {"&&", ";", "&", "||"}:
                if words:
                    commands.append(_command(words, comment, unset, variables))
                words = []
            else:
                assert token != "|", f"{block.name}: a pipe: add a rule for it"
                words.append(token)
    return [c for c in commands if c.words]


def _command(words: list[str], comment: str, unset: list[str],
             variables: dict[str, str]) -> Command:
    env = {}
    while words and re.match(r"^\w+=", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if not words:  # NAME=value alone sets a shell variable
        variables.update(env)
        env = {}
    placeholders = [*unset, *(w for w in words if PLACEHOLDER.match(w))]
    return Command(words, env, comment, placeholders)


def run_command(command: Command, block: Block, workspace: Workspace) -> None:
    """Run one command of a shell block, or check it by the rule of its program."""
    words = command.words
    program = words[0]
    where = f"{block.name}: `{shlex.join(words)}`"
    if program in {"python", "python3"} and words[1:3] == ["-m", "imtrans"]:
        words = ["imtrans", *words[3:]]
        program = "imtrans"
    if program == "imtrans":
        run_imtrans(command, words[1:], block, workspace, where)
    elif program == "torchrun":
        assert "imtrans" in words, f"{where}: torchrun of something other than imtrans"
        check_imtrans(words[words.index("imtrans") + 1:], where)
        workspace.note(block, "static: several processes (torchrun)")
    elif program == "pip":
        check_pip(words[1:], where)
        workspace.note(block, f"static: pip {words[1] if len(words) > 1 else ''}")
    elif program in {"python", "python3"}:
        workspace.note(block, run_python_command(words[1:], where))
    elif program in {".", "source"}:
        assert words[1:] == [".venv/bin/activate"], f"{where}: activates something unknown"
        workspace.note(block, "static: environment setup")
    elif program in OTHER_PROGRAMS:
        workspace.note(block, f"static: {OTHER_PROGRAMS[program]}")
    else:
        pytest.fail(f"{where}: no rule runs or checks `{program}`: add one to "
                    "tests/test_doc_examples.py, or a <!-- not run: why --> marker")


#: pip's options the examples use: flags, and options that take a value.
PIP_FLAGS = {"-e", "--editable", "--no-deps", "-U", "--upgrade", "-q", "--quiet"}
PIP_VALUED = {"--index-url", "-i", "--extra-index-url", "-d", "--dest"}


def check_pip(args: list[str], where: str) -> None:
    """``pip install``: imtrans from the clone (``-e``) with extras pyproject.toml defines, a
    local plugin folder that is a package (``-e``), or other distributions (not looked up);
    ``pip download``: options it takes. Nothing is installed or fetched."""
    assert args[:1] in (["install"], ["download"]), f"{where}: no rule for pip {args[:1]}"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    words, editable = iter(args[1:]), False
    for word in words:
        if word in PIP_VALUED:
            next(words)
            continue
        if word.startswith("-"):
            assert word in PIP_FLAGS, f"{where}: pip option {word} has no rule"
            editable = word in {"-e", "--editable"}
            continue
        requirement = re.match(r"^([\w.\-/]+)(?:\[([\w,\-]+)\])?(?:[<>=!~]=?[\w.*]+)?$", word)
        assert requirement, f"{where}: cannot read the requirement {word!r}"
        name, wanted = requirement.group(1), requirement.group(2)
        from_clone = f'pip install -e ".[{wanted}]"' if wanted else "pip install -e ."
        assert name != "imtrans", (
            f"{where}: imtrans installs from a clone of the repository: {from_clone}")
        if name.startswith("."):
            folder = ROOT / name
            assert (folder / "pyproject.toml").is_file(), f"{where}: {name} is not a package"
            assert editable, f"{where}: a folder of the clone installs with -e"
            if folder == ROOT:
                for extra in (wanted or "").split(","):
                    assert not extra or extra in extras, f"{where}: no extra {extra!r}"
        editable = False


def run_python_command(args: list[str], where: str) -> str:
    """``python -c CODE`` runs (in a process of its own, as typed) and must exit 0;
    ``python -m venv|pytest|build`` is checked: pytest's paths exist. Returns the outcome."""
    if args[:1] == ["-c"]:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"
        return "ran"
    assert args[:1] == ["-m"], f"{where}: no rule for this python command"
    module, rest = args[1], args[2:]
    assert module in {"venv", "pytest", "build"}, f"{where}: no rule for python -m {module}"
    for arg in rest:
        if module == "pytest" and not arg.startswith("-"):
            assert (ROOT / arg.split("::")[0]).exists(), f"{where}: {arg} does not exist"
    return f"static: python -m {module}"


def imtrans_command(args: list[str], where: str) -> tuple[click.Command, list[str], list[str]]:
    """The (sub)command ``args`` name, the arguments it gets and the names leading to it."""
    command: click.Command = cli
    path: list[str] = []
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        found = command.get_command(click.Context(command), rest[0])
        assert found is not None, f"{where}: no such command `imtrans {' '.join(path + rest[:1])}`"
        path.append(rest.pop(0))
        command = found
    return command, rest, path


def check_imtrans(args: list[str], where: str) -> None:
    """The command exists, takes each option with the value given, and the arguments fit:
    click parses them as it would (a path argument's existence aside)."""
    command, rest, path = imtrans_command(args, where)
    if rest in (["--version"], ["--help"]):
        return
    try:
        with command.make_context(" ".join(["imtrans", *path]), list(rest)):
            pass
    except click.BadParameter as exc:
        if not isinstance(getattr(exc.param, "type", None), click.Path):
            pytest.fail(f"{where}: {exc.format_message()}")
    except click.UsageError as exc:
        pytest.fail(f"{where}: {exc.format_message()}")
    if path == ["run"]:
        check_recipe(rest, where)


def check_recipe(args: list[str], where: str) -> None:
    """A statically checked ``run``: its recipe loads with its overrides (placeholders aside)."""
    from imtrans.catalogue.recipe_loader import load_recipe

    ctx = run_context(args)
    recipe, sets = ctx["recipe_path"], [s for s in ctx["overrides"] if "$" not in s]
    if "$" not in recipe and not PLACEHOLDER.match(recipe):
        try:
            load_recipe(ROOT / recipe, sets)
        except ImtransError as exc:
            pytest.fail(f"{where}: {exc}")


def run_context(args: list[str]) -> dict[str, object]:
    command, rest, _ = imtrans_command(["run", *args], "run")
    return command.make_context("imtrans run", list(rest), resilient_parsing=True).params


def static_reason(command: Command, args: list[str], block: Block, where: str) -> str | None:
    """Why an imtrans command is checked rather than run; None: it runs."""
    _, rest, path = imtrans_command(args, where)
    joined = " ".join(rest)
    if block.not_run is not None:
        return block.not_run
    if command.placeholders:
        return f"placeholders for the reader's own ({', '.join(command.placeholders)})"
    if "download" in path or "--download-inception" in rest:
        return "downloads from the internet"
    if re.search(r"--device[ =]cuda|device=cuda", joined):
        return "needs a GPU"
    if path == ["run"] and int(run_context(rest)["nproc"] or 1) > 1:  # type: ignore[call-overload]
        return "starts several processes"
    if path == ["import"]:
        return "reads checkpoints of the official code, which the suite does not have"
    if path == ["eval"] and not INCEPTION.is_file():
        return f"needs the FID Inception weights ({INCEPTION} is missing)"
    return None


def run_imtrans(command: Command, args: list[str], block: Block, workspace: Workspace,
                where: str) -> None:
    reason = static_reason(command, args, block, where)
    if reason is not None:
        check_imtrans(args, where)
        workspace.note(block, f"static: {reason}")
        return
    _, rest, path = imtrans_command(args, where)
    if path == ["run"]:
        args = [*args, *tiny_overrides(rest)]
    elif path and path[0] in {"translate", "eval", "report", "export"}:
        for word in rest:
            run = re.match(r"^runs/([\w.-]+)/?$", word)
            if run:
                workspace.provide_run(run.group(1))
    if path == ["translate"]:
        source = _params(path, rest)["source"]
        workspace.provide_input(str(source))
    if path == ["eval"]:
        workspace.provide_inception(_params(path, rest)["inception"])
    result = CliRunner().invoke(cli, args, env=command.env, catch_exceptions=False)
    assert result.exit_code == 0, f"{where} failed:\n{result.output[-3000:]}"
    assert "error:" not in result.output, f"{where}:\n{result.output[-3000:]}"
    for written in _outputs(path, rest, command.comment):
        assert (workspace.folder / written).exists(), f"{where} did not write {written}"
    said = " ".join(result.output.split())  # rich wraps long lines
    if path == ["run"]:  # trained (or, resumed at the end, found) the tiny run's last step
        end = re.search(r"finished at step (\d+): .*?\(last checkpoint (\S+)\)", said)
        assert end, f"{where} did not say where it finished:\n{result.output[-3000:]}"
        assert int(end.group(1)) == TINY["train.max_steps"], f"{where}: {end.group(0)}"
        assert (workspace.folder / end.group(2)).is_file(), f"{where}: {end.group(0)}"
    if path == ["translate"]:
        wrote = re.search(r"wrote (\d+) image", said)
        assert wrote and int(wrote.group(1)) > 0, f"{where}:\n{result.output[-3000:]}"
    workspace.note(block, "ran")


def _params(path: list[str], rest: list[str]) -> dict[str, object]:
    command, _, _ = imtrans_command(path, "")
    return command.make_context("imtrans", list(rest), resilient_parsing=True).params


def _outputs(path: list[str], rest: list[str], comment: str) -> list[str]:
    """What a command run must leave: translate's OUTPUT, an ``-o`` file, and the paths its
    comment names (``# + paintings/index.html``)."""
    written = re.findall(r"(?<![\w/])((?:[\w.-]+/)+[\w.-]+\.\w+)", comment)
    if path and path[0] in {"translate", "export", "report"}:
        params = _params(path, rest)
        written += [str(params[key]) for key in ("output",) if params.get(key)]
    return written


def tiny_overrides(args: list[str]) -> list[str]:
    """The ``--set`` options that make an example's ``imtrans run`` tiny: :data:`TINY`, and a
    size where the example gives none."""
    params = run_context(args)
    given = {str(s).split("=", 1)[0] for s in params["overrides"]}  # type: ignore[union-attr]
    settings = dict(TINY)
    if not given & {"data.load_size", "data.crop_size"}:
        recipe = Path(str(params["recipe_path"])).name
        settings |= TINY_PIX2PIX_SIZE if recipe.startswith("pix2pix") else TINY_SIZE
    return [word for key, value in settings.items() for word in ("--set", f"{key}={value}")]
