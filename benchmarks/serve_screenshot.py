"""The README's picture of `text2sign serve` (docs/serve.png), taken in headless Chromium.

    python benchmarks/serve_screenshot.py [--model FOLDER] [--text L] [--frame 10]
        [--out docs/serve.png]

Starts `text2sign serve` on a free localhost port (run it where the model's corpus and its
readers are at hand, e.g. after `text2sign demo`), types the text, generates with the
model's default sampler settings, stops both players at one frame and saves the page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serve_load import start_server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="model folder (default: the shipped demo model)")
    p.add_argument("--text", default="L")
    p.add_argument("--frame", type=int, default=10, help="1-based frame to stop the players on")
    p.add_argument("--out", default="docs/serve.png")
    args = p.parse_args(argv)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from text2sign.serve.browser import headless_chromium

    server, url = start_server(argparse.Namespace(model=args.model, device="cpu", max_queue=8))
    driver = headless_chromium(820, 1000)
    try:
        driver.get(url + "/")
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: d.find_element(By.ID, "text").get_attribute("maxlength") != "-1")
        driver.find_element(By.ID, "text").send_keys(args.text)
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("data-shown"))
        driver.execute_script(
            "const s = document.getElementById('slider'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('input'));", args.frame - 1)
        driver.execute_script("document.activeElement.blur()")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(820, height + 140)  # the window includes the browser's frame
        driver.save_screenshot(args.out)
        print(driver.find_element(By.ID, "reading").text, file=sys.stderr)
    finally:
        driver.quit()
        server.terminate()
        server.wait(60)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
