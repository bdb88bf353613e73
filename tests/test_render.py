"""Rendering is a pure function of the report model: gold pages, links, escaping, paging."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest
from tiny_report import tiny_report

from reportgen import layout, render
from reportgen.render import _pager, integer_scale, render_site
from reportgen.report import slugify

GOLD = Path(__file__).parent / "gold"
GOLD_FAILED = Path(__file__).parent / "gold-failed"
# Pages whose exact bytes are specified; refresh with REPORTGEN_UPDATE_GOLD=1 after a deliberate change.
GOLD_PAGES = ("index.html", "results.html", "images/squares-img-1-png-8adb8bb7a72a.html",
              "layers/block-conv-f47819d2ea5b/index.html", "layers/block-conv-f47819d2ea5b/page-2.html")
# Assets the build writes beside the rendered pages (the renderer only links to them).
ASSET_PATTERNS = (r"assets/inputs/.+\.png", r"assets/maps/.+\.png", r"assets/atlas/.+\.png",
                  r"assets/curves/(accuracy|loss)\.svg")


class LinkParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name) is not None:
                self.links.append(attrs[name])


def parse(html: bytes) -> LinkParser:
    parser = LinkParser()
    parser.feed(html.decode("utf-8"))
    return parser


def _once_per_module_unless_mutating(fixture_name, config) -> str:
    # mutmut credits a function only to the test that first ran it: under mutation testing
    # every test renders for itself, so every test that reads the site runs for each mutant.
    return "function" if os.environ.get("MUTANT_UNDER_TEST") else "module"


@pytest.fixture(scope=_once_per_module_unless_mutating)
def site() -> dict[str, bytes]:
    return dict(render_site(tiny_report()))


def check_gold(page: str, output: bytes, gold_folder: Path, failed_folder: Path,
               update: bool) -> None:
    """Compare `output` with its gold file; with `update`, rewrite the gold file and fail anyway.

    A refresh is never a pass: it must be looked at (git diff tests/gold) and the suite rerun.
    """
    gold = gold_folder / page
    if update:
        changed = not gold.is_file() or gold.read_bytes() != output
        gold.parent.mkdir(parents=True, exist_ok=True)
        gold.write_bytes(output)
        pytest.fail(f"REPORTGEN_UPDATE_GOLD is set: {gold} was rewritten "
                    f"({'changed' if changed else 'unchanged'}); review the change with "
                    "git diff tests/gold, then rerun without REPORTGEN_UPDATE_GOLD")
    if output != gold.read_bytes():
        failed = failed_folder / page
        failed.parent.mkdir(parents=True, exist_ok=True)
        failed.write_bytes(output)
        pytest.fail(f"{page} differs from its gold file; the new output is in {failed} "
                    "(REPORTGEN_UPDATE_GOLD=1 accepts it)")


@pytest.mark.parametrize("page", GOLD_PAGES)
def test_gold_pages(site, page):
    check_gold(page, site[page], GOLD, GOLD_FAILED, update=bool(os.environ.get("REPORTGEN_UPDATE_GOLD")))


def test_a_gold_refresh_writes_the_files_and_still_fails(tmp_path):
    gold, failed = tmp_path / "gold", tmp_path / "failed"
    (gold / "a").mkdir(parents=True)
    (gold / "a/page.html").write_bytes(b"old")
    with pytest.raises(pytest.fail.Exception, match=r"rewritten \(changed\).*rerun without"):
        check_gold("a/page.html", b"new", gold, failed, update=True)
    assert (gold / "a/page.html").read_bytes() == b"new"
    with pytest.raises(pytest.fail.Exception, match=r"rewritten \(unchanged\)"):
        check_gold("a/page.html", b"new", gold, failed, update=True)
    with pytest.raises(pytest.fail.Exception, match="differs from its gold file"):
        check_gold("a/page.html", b"other", gold, failed, update=False)
    assert (failed / "a/page.html").read_bytes() == b"other"
    check_gold("a/page.html", b"new", gold, failed, update=False)


def test_every_link_resolves(site):
    pages = {path for path in site if path.endswith(".html")}
    assert len(pages) > 20
    for page in pages:
        parser = parse(site[page])
        for link in parser.links:
            assert not re.match(r"^[a-z][a-z0-9+.-]*:|^/", link), f"{page}: non-relative link {link}"
            target, _, fragment = link.partition("#")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), target)) \
                if target else page
            assert not resolved.startswith(".."), f"{page}: {link} leaves the site"
            is_asset = any(re.fullmatch(p, resolved) for p in ASSET_PATTERNS)
            assert resolved in site or is_asset, f"{page}: {link} points nowhere"
            if fragment and resolved.endswith(".html"):
                assert fragment in parse(site[resolved]).ids, f"{page}: no #{fragment} in {resolved}"


def test_render_is_deterministic():
    assert dict(render_site(tiny_report())) == dict(render_site(tiny_report()))


def test_every_page_forbids_network(site):
    for path, html in site.items():
        if path.endswith(".html"):
            assert b"default-src 'none'" in html, path
            assert b"http://" not in html and b"https://" not in html, path


def test_site_scaffolding(site):
    assert site[".nojekyll"] == b""
    assert "404.html" in site
    assert site["static/style.css"].startswith(b"/*")
    assert site["static/favicon.svg"].startswith(b"<svg")
    for path, html in site.items():
        if path.endswith(".html"):
            icon = f'<link rel="icon" href="{layout.root_prefix(path)}static/favicon.svg"'
            assert icon.encode() in html, path


def test_hostile_names_are_escaped():
    names = ('<script>alert(1)</script>', 'a&b "quoted"', "東京 #1?%")
    paths = [f"{names[i % 3]}/x<y>&{i}.png" for i in range(6)]
    site = dict(render_site(tiny_report(class_names=names, paths=paths)))
    html = b"".join(data for path, data in site.items() if path.endswith(".html"))
    assert b"<script>alert" not in html
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "東京 #1?%".encode() in html
    assert all(re.fullmatch(r"[a-z0-9._/-]+", path) for path in site), sorted(site)
    report = json.loads(site["report.json"])
    assert report["classes"] == list(names)


def test_report_json_matches_the_model():
    report = tiny_report()
    data = json.loads(dict(render_site(report))["report.json"])
    assert data["schema_version"] == 1
    assert data["metrics"]["accuracy"] == pytest.approx(4 / 6)
    assert [i["path"] for i in data["images"]] == [i.path for i in report.images]
    for image in data["images"]:
        probabilities = image["probabilities"]
        assert image["predicted_label"] == probabilities.index(max(probabilities))
    assert sum(i["true_label"] != i["predicted_label"] for i in data["images"]) == 2
    # The matrix counted here from the images, not taken from the code that made it.
    counted = [[0] * 3 for _ in range(3)]
    for image in data["images"]:
        counted[image["true_label"]][image["predicted_label"]] += 1
    assert data["metrics"]["confusion_matrix"] == counted
    assert counted != [list(column) for column in zip(*counted, strict=True)]  # so rows != columns
    conv = data["feature_layers"][0]
    assert conv["dead_channels"] == 1 and conv["channel_stats"][0]["dead"] is True
    assert conv["channel_stats"][0]["top_images"] and conv["channel_stats"][1]["active_share"] == 1.0
    assert data["history"]["best_epoch"] == 2
    assert data["data"]["skipped"] == [{"path": "test_set/circles/broken.png",
                                        "reason": "truncated image data"}]


SITE_URL = "https://you.github.io/repo/"


def test_without_a_site_url_there_is_no_sitemap_and_no_canonical_link(site):
    assert "sitemap.xml" not in site
    assert not any(b'rel="canonical"' in data for path, data in site.items() if path.endswith(".html"))


def test_a_site_url_adds_canonical_links_and_a_sitemap_and_changes_nothing_else(site):
    published = dict(render_site(tiny_report(), site_url=SITE_URL))
    assert set(published) == set(site) | {"sitemap.xml"}
    pages = sorted(path for path in site if path.endswith(".html") and path != "404.html")
    for path in pages:
        canonical = f'<link rel="canonical" href="{layout.page_url(SITE_URL, path)}">\n'.encode()
        assert published[path].count(canonical) == 1, path
        assert published[path].replace(canonical, b"") == site[path], path
    unchanged = set(site) - set(pages) - {"404.html"}
    assert {path: published[path] for path in unchanged} == {path: site[path] for path in unchanged}
    root = ElementTree.fromstring(published["sitemap.xml"])
    namespace = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
    locations = [loc.text for loc in root.iter(f"{namespace}loc")]
    assert locations == [layout.page_url(SITE_URL, path) for path in site if path in pages]
    assert SITE_URL in locations and SITE_URL + "index.html" not in locations
    assert SITE_URL + "layers/block-conv-f47819d2ea5b/" in locations


def test_with_a_site_url_the_404_page_links_to_the_site_by_absolute_url(site):
    published = dict(render_site(tiny_report(), site_url=SITE_URL))
    links = parse(published["404.html"]).links
    assert SITE_URL + "static/style.css" in links and SITE_URL + "index.html" in links
    assert [link for link in links if not link.startswith(SITE_URL)] == ["#content"]
    assert b'rel="canonical"' not in published["404.html"]
    relative = parse(site["404.html"]).links
    assert [link for link in relative if "://" in link] == []


def test_page_urls_name_a_folder_for_its_index():
    assert layout.page_url(SITE_URL, "index.html") == SITE_URL
    assert layout.page_url(SITE_URL, "layers/x/index.html") == SITE_URL + "layers/x/"
    assert layout.page_url(SITE_URL, "layers/x/page-2.html") == SITE_URL + "layers/x/page-2.html"
    assert layout.page_url(SITE_URL, "myindex.html") == SITE_URL + "myindex.html"


def test_every_page_has_its_own_title(site):
    def title(page: str) -> str:
        return re.search(r"<title>(.*?)</title>", site[page].decode()).group(1)

    assert title("404.html") == "Not found · tiny on fixtures"
    assert title(layout.cell_page(slugify("squares"), slugify("circles"))) == \
        "squares → circles · tiny on fixtures"
    assert title(layout.class_page(slugify("triangles"))) == "triangles · tiny on fixtures"


def test_report_json_is_strict_json(monkeypatch):
    """A NaN that slipped into the report fails the render instead of writing invalid JSON."""
    import reportgen.render

    monkeypatch.setattr(reportgen.render, "report_json", lambda report: {"selectivity": float("nan")})
    with pytest.raises(ValueError, match="JSON compliant"):
        dict(render_site(tiny_report()))


def test_an_installed_package_reads_the_templates_inside_it(tmp_path, monkeypatch):
    """A wheel ships them as reportgen/templates, a checkout beside the package."""
    package = tmp_path / "site-packages" / "reportgen"
    (package / "templates").mkdir(parents=True)
    (tmp_path / "site-packages" / "templates").mkdir()  # another project's, say
    monkeypatch.setattr(render, "__file__", str(package / "render.py"))
    assert render.templates_dir() == package / "templates"


def test_a_checkout_reads_the_templates_beside_the_package(tmp_path, monkeypatch):
    package = tmp_path / "checkout" / "reportgen"
    package.mkdir(parents=True)
    monkeypatch.setattr(render, "__file__", str(package / "render.py"))
    assert render.templates_dir() == tmp_path / "checkout" / "templates"


def test_slugs_are_readable_ascii_of_at_most_40_characters_then_a_hash():
    digest = hashlib.sha256
    long_name = "a" * 39 + " b" + "c" * 10  # the 40th character is a separator

    assert slugify(" Café crème! ") == "cafe-creme-" + digest(" Café crème! ".encode()).hexdigest()[:12]
    assert slugify(long_name) == "a" * 39 + "-" + digest(long_name.encode()).hexdigest()[:12]
    assert slugify("b" * 50).startswith("b" * 40 + "-")
    assert slugify("!" + "b" * 50).startswith("b" * 40 + "-")  # separators never count
    assert len(slugify("b" * 50)) == 40 + 1 + 12
    assert slugify("猫") == digest("猫".encode()).hexdigest()[:12]  # nothing readable: the hash alone


def test_no_history_says_so():
    site = dict(render_site(tiny_report(with_history=False)))
    assert b"No training history was given" in site["index.html"]
    assert b"assets/curves" not in site["index.html"]
    assert json.loads(site["report.json"])["history"] is None


def test_pager_shows_neighbours_and_gaps():
    pager = _pager(lambda page: layout.layer_page("conv", page), 5, 10)
    numbers = [p.get("number", "…") for p in pager["pages"]]
    assert numbers == [1, "…", 3, 4, 5, 6, 7, "…", 10]
    assert pager["previous"] == layout.layer_page("conv", 4)
    assert pager["next"] == layout.layer_page("conv", 6)
    single = _pager(lambda page: layout.layer_page("conv", page), 1, 1)
    assert single["previous"] is None and single["next"] is None


def test_gallery_pages_split_images(site):
    first = site["layers/block-conv-f47819d2ea5b/index.html"].decode()
    third = site["layers/block-conv-f47819d2ea5b/page-3.html"].decode()
    assert first.count('class="entry ') == 2 and third.count('class="entry ') == 2
    assert "Channel atlas" in first and "Channel atlas" not in third


def test_each_gallery_entry_shows_its_own_image_and_its_own_layer(site):
    """An image's picture and caption are rendered once and reused by every layer's gallery
    (render.Views.gallery_head); each entry must still show, name and link its own image."""
    report = tiny_report()
    images = {image.slug: image for image in report.images}
    entries = 0
    for layer in report.layers:
        for page in (p for p in site if p.startswith(f"layers/{layer.slug}/") and "atlas" not in p):
            for rest in site[page].decode().split('<div class="entry ')[1:]:
                entry = rest.partition("</figure>")[0]  # up to the end of its grid
                css, slug = re.match(r'(\w+)" id="img-([^"]+)"', entry).groups()
                image = images[slug]
                assert css == ("correct" if image.correct else "wrong")
                assert set(re.findall(r'href="([^"]+)"', entry)) == {f"../../images/{slug}.html"}
                assert re.findall(r'src="([^"]+)"', entry) == [
                    f"../../assets/inputs/{slug}.png", f"../../assets/maps/{layer.slug}/{slug}.png"]
                assert f"<code>{image.path}</code>" in entry and f'alt="{image.path}"' in entry
                assert f' of {layer.path} for {image.path}" loading="lazy">' in entry
                assert ("→" in entry) == (not image.correct)
                entries += 1
    assert entries == len(report.layers) * len(report.drawn_indices)


def test_each_layers_heatmap_is_shaded_up_to_its_own_highest_class_mean(site):
    for layer in tiny_report().layers:
        html = site[layout.layer_page(layer.slug)].decode()
        heatmap = html.partition('<table class="heatmap">')[2].partition("</table>")[0]
        shades = [int(s) for s in re.findall(r'class="shade-(\d+)"', heatmap)]
        assert len(shades) == layer.output_shape[2] * 3 and max(shades) == 10, layer.path


def test_report_json_is_spread_over_lines_four_levels_deep():
    value = {"a": 1, "layers": [{"path": "x", "channels": [{"index": 0, "top": [{"path": "é"}]},
                                                           {"index": 1, "top": []}]}],
             "empty": [], "numbers": [1.5, None], "matrix": [[1, 2], [3, 4]]}
    text = render.json_text(value)
    assert json.loads(text) == value
    assert text.splitlines() == [
        "{",
        ' "a": 1,',
        ' "layers": [',
        "  {",
        '   "path": "x",',
        '   "channels": [',
        '    {"index": 0, "top": [{"path": "é"}]},',
        '    {"index": 1, "top": []}',
        "   ]",
        "  }",
        " ],",
        ' "empty": [],',
        ' "numbers": [1.5, null],',
        ' "matrix": [',
        "  [1, 2],",
        "  [3, 4]",
        " ]",
        "}",
    ]


def test_integer_scale_keeps_pixels_square():
    assert integer_scale(84, 28) == 3
    assert integer_scale(56, 3, max_px=20) == 6
    assert integer_scale(10, 100) == 1


def teardown_module():
    if GOLD_FAILED.exists() and not any(GOLD_FAILED.rglob("*.html")):
        shutil.rmtree(GOLD_FAILED)


def many_classes(n_classes: int):
    names = [f"class {i:04d}" for i in range(n_classes)]
    paths = [f"{names[i % n_classes]}/img_{i}.png" for i in range(2 * n_classes)]
    return tiny_report(class_names=names, paths=paths, images_per_page=24)


def test_pages_grow_linearly_with_classes_and_only_non_empty_cells_get_pages():
    counts = {}
    for n_classes in (40, 80):
        report = many_classes(n_classes)
        site = dict(render_site(report))
        cells = [path for path in site if path.startswith("cells/")]
        confusion = report.metrics.confusion
        off_diagonal = int((confusion > 0).sum() - (confusion.diagonal() > 0).sum())
        assert len(cells) == off_diagonal == 2  # the diagonal is on the class pages
        pages = sum(path.endswith(".html") for path in site)
        counts[n_classes] = pages
        # Images, cells with images, classes, two layers' galleries, index, results and 404.
        gallery = layout.page_count(2 * n_classes, 24)
        assert pages == 2 * n_classes + len(cells) + n_classes + 2 * gallery + 3
        results = site["results.html"].decode()
        assert "confusion-picture" in results and "<table class=\"confusion\">" not in results
        assert site[layout.confusion_asset()].startswith(b"\x89PNG")
        image_page = site[layout.image_page(report.images[0].slug)].decode()
        assert image_page.count("<meter") == 10  # the top classes, not one bar per class
    assert counts[80] <= 2 * counts[40]  # twice the classes (and images): at most twice the pages


def test_class_pages_are_paged():
    names = ("a", "b")
    paths = [f"{names[i % 2]}/img_{i:03d}.png" for i in range(250)]
    site = dict(render_site(tiny_report(class_names=names, paths=paths, images_per_page=24)))
    slug = slugify("a")
    assert {layout.class_page(slug, n) for n in (1, 2)} <= set(site)
    assert layout.class_page(slug, 3) not in site  # 125 images, 96 a page
    first = site[layout.class_page(slug)].decode()
    assert first.count('class="thumb ') == 96
    assert 'href="' + posixpath.basename(layout.class_page(slug, 2)) + '"' in first.replace(
        "../classes/", "")
