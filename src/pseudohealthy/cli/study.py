"""`pseudohealthy study`: the blinded reader study of the paper's Table II (create, serve, export)."""
from __future__ import annotations

from pathlib import Path

import typer

from pseudohealthy.cli.common import friendly, warn

ORDER = 80


def _parse_window(text: str | None) -> tuple[float, float] | None:
    from pseudohealthy.errors import UserError

    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--window {text!r}: expected LOW,HIGH in input units, for example -200,250.") from None
    return low, high


def register(app: typer.Typer) -> None:
    study = typer.Typer(help="Blinded reader study (Table II): create, serve, export.", no_args_is_help=True)
    app.add_typer(study, name="study")

    @study.command("create")
    @friendly
    def create(
        data: Path = typer.Option(..., "--data", "-d", help="Raw data set folder with the inputs and lesion masks (BraTS, LiTS, nnU-Net layout)."),
        method: list[str] = typer.Option(..., "--method", "-m", help="NAME=DIR: a method's outputs, one <case_id>.nii.gz per case; repeat per method."),
        output: Path = typer.Option(..., "--output", "-o", help="Study folder to create (database and images)."),
        slices: int = typer.Option(100, help="Number of lesion slices to rate (paper: 100)."),
        raters: int = typer.Option(3, help="Number of raters, each with a private link (paper: 3)."),
        seed: int = typer.Option(0, help="Seed of the slice selection (orders and names are secret, not seeded)."),
        window: str = typer.Option(None, help="Fixed display window LOW,HIGH for every slice (e.g. -200,250 HU); default: each input slice's 0.5-99.5 percentiles."),
        source: str = typer.Option("auto", help="auto | brats | lits | folder"),
        modality: str = typer.Option("t2", help="BraTS modality suffix of the inputs."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing study folder's contents."),
    ) -> None:
        """Pick lesion slices at random, render them blinded and store the study (SQLite)."""
        from pseudohealthy.study.create import create_study, parse_methods

        summary = create_study(data, parse_methods(method), output, n_slices=slices, n_raters=raters, seed=seed,
                               window=_parse_window(window), source=source, modality=modality, overwrite=overwrite)
        for message in summary.warnings:
            warn(message)
        typer.echo(f"created a study of {summary.slices} slice(s) from {summary.cases} case(s), {len(summary.methods)} method(s), "
                   f"{summary.raters} rater(s) in {summary.study_dir}; next: pseudohealthy study serve {summary.study_dir}")

    @study.command("serve")
    @friendly
    def serve(
        study_dir: Path = typer.Argument(..., help="Study folder made by `pseudohealthy study create`."),
        host: str = typer.Option("127.0.0.1", help="Address to listen on; the default is reachable from this machine only."),
        port: int = typer.Option(8000, help="Port to listen on (0 picks a free one)."),
        threads: int = typer.Option(8, help="Worker threads of the server."),
    ) -> None:
        """Serve the rating pages; prints one private link per rater and an admin link."""
        from pseudohealthy.study.server import base_url, is_loopback, links, make_server

        server = make_server(study_dir, host=host, port=port, threads=threads)
        url = base_url(server, host)
        raters, admin = links(study_dir, url)
        if not is_loopback(host):
            warn(f"listening on {host}: anyone who can reach this address and holds a link can open it; prefer a loopback address behind an SSH tunnel.")
        typer.echo(f"serving {study_dir} at {url} (Ctrl+C stops; ratings are saved with every click)")
        for name, link in raters:
            typer.echo(f"  {name}: {link}")
        typer.echo(f"  admin: {admin}")
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()

    @study.command("export")
    @friendly
    def export(
        study_dir: Path = typer.Argument(..., help="Study folder made by `pseudohealthy study create`."),
        output: Path = typer.Option(None, "--output", "-o", help="Folder for the tables (default: STUDY_DIR/export)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export folder's contents."),
    ) -> None:
        """Write Table II (CSV, JSON, HTML) and the inter-rater agreement."""
        from pseudohealthy.study.export import export_study, fmt

        result = export_study(study_dir, output, overwrite=overwrite)
        if result.stored < result.expected:
            warn(f"{result.expected - result.stored} of {result.expected} scores are still missing; the table uses those given.")
        typer.echo(f"{'method':<24} {'healthiness':<20} {'identity':<20}")
        for row in result.table:
            typer.echo(f"{row['method']:<24} {fmt(row['healthiness_mean'], row['healthiness_std']):<20} "
                       f"{fmt(row['identity_mean'], row['identity_std']):<20}")
        for criterion, a in result.agreement.items():
            alpha = a["krippendorff_alpha_ordinal"]
            typer.echo(f"Krippendorff's alpha (ordinal), {criterion}: " + (f"{alpha:.3f}" if alpha is not None else f"- ({a['note']})"))
        typer.echo(f"wrote table2.csv, table2.json, table2.html and ratings.csv to {result.folder}")
