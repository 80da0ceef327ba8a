"""The address shoal is reached at, as clients and workers elsewhere see it."""

from shoal.api.server import ShoalServer
from shoal.control.platform import Settings


def test_blob_urls_name_the_public_host_not_the_listening_address(tmp_path):
    settings = Settings(home=str(tmp_path), server_url="http://gpu-box.internal:7470")
    public = ShoalServer(settings, "0.0.0.0", 7470, 7471, 7472, 7473)
    assert public.blob_urls.upload("bl-1").startswith("http://gpu-box.internal:7471/blobs/bl-1?sig=")
    local = ShoalServer(Settings(home=str(tmp_path / "b")), "127.0.0.1", 7480, 7481, 7482, 7483)
    assert local.settings.server_url == "http://127.0.0.1:7480"
    assert local.blob_urls.download("bl-1").startswith("http://127.0.0.1:7481/blobs/bl-1?sig=")


def test_web_endpoints_are_hosts_in_the_web_domain(tmp_path):
    local = ShoalServer(Settings(home=str(tmp_path)), "127.0.0.1", 7470, 7471, 7472, 7473)
    assert local.settings.web_url.format(label="shoal--app-f") == "http://shoal--app-f.localhost:7472"
    named = ShoalServer(
        Settings(home=str(tmp_path / "b"), web_domain="shoal.example.com"), "0.0.0.0", 7470, 7471, 7472, 7473
    )
    assert named.settings.web_url.format(label="shoal--app-f") == "http://shoal--app-f.shoal.example.com:7472"


def test_shoal_up_refuses_a_web_domain_that_is_not_one(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from shoal.cli.main import main

    monkeypatch.setenv("SHOAL_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["up", "--web-domain", "two words"])
    assert result.exit_code == 2 and "expected a domain such as shoal.example.com, not 'two words'" in result.output
