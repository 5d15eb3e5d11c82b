"""The package's imports go one way: no module imports, even lazily inside a function, one
that imports it back; the networks know nothing of training, files or commands; the AWS
commands and the recipe flags never load TensorFlow."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'condgan'


def project_imports(path):
    """The condgan modules that the file at `path` imports, anywhere in it."""
    package = module_name(path.parent / '__init__.py')
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:  # relative: from . import x, from .x import y
                base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1] + ([base] if base else []))
            if base.startswith('condgan'):
                imported.add(base)
                imported.update(f'{base}.{a.name}' for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names if a.name.startswith('condgan.'))
        elif (isinstance(node, ast.Call) and getattr(node.func, 'attr', '') == 'import_module'
              and node.args and isinstance(node.args[0], ast.JoinedStr)):
            imported.add('condgan.*')  # commands.main's evaluate/synthesize: checked below
    return imported


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph():
    graph = {module_name(path): project_imports(path) for path in PACKAGE.rglob('*.py')}
    modules = set(graph)
    # `condgan.aws` and its package import resolve to their modules; a wildcard is any module
    # the command dispatches to, which are the modules it names in its parser.
    return {name: {target for target in targets if target in modules} |
            ({'condgan.evaluate', 'condgan.synthesize'} if 'condgan.*' in targets else set())
            for name, targets in graph.items()}


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    visiting, done = [], set()

    def visit(name):
        assert name not in visiting, 'import circle: ' + ' -> '.join(visiting[visiting.index(name):] + [name])
        if name in done:
            return
        visiting.append(name)
        for target in graph[name]:
            visit(target)
        visiting.pop()
        done.add(name)

    for name in graph:
        visit(name)


def test_the_networks_know_nothing_of_training_files_or_commands():
    graph = import_graph()
    # 'condgan' is the package itself (`from condgan import layers`), which imports nothing.
    assert graph['condgan'] == set()
    # checks: argument checks, pure Python
    assert graph['condgan.model'] - {'condgan'} == {'condgan.layers', 'condgan.conditioning', 'condgan.checks'}
    assert graph['condgan.checks'] == set()
    assert graph['condgan.layers'] == graph['condgan.conditioning'] == set()
    assert graph['condgan.datasets'] == {'condgan.conditioning'}
    assert 'condgan.evaluate' not in graph['condgan.gan']


def test_the_recipes_and_aws_commands_never_load_tensorflow():
    code = ('import sys, condgan.recipes, condgan.commands, condgan.runs, condgan.pictures, '
            'condgan.aws.__main__; print("tensorflow" in sys.modules)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == 'False'


def test_the_sagemaker_entry_point_imports_nothing_of_the_aws_commands():
    # It runs in the job, after them in the module order; what both need lies below both.
    assert not {name for name in import_graph()['condgan.sagemaker_entry'] if name.startswith('condgan.aws')}
