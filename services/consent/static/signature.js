// The proof of consent (services/consent/screens/accord.html, and the offline page,
// services/intake/screens/hors-ligne.html): the block of the chosen
// method only; a signature drawn with a finger or a stylus, kept as a PNG in the form; a
// photo of the signed paper form, reduced to a JPEG small enough to send. Without scripts,
// every block shows and the page says to choose the oral agreement or the paper form.
(() => {
  const form = document.querySelector("form[data-proof]");
  if (!form) return;
  const MAX_URL = 680000; // a data URL of ~500 KB: the server refuses larger images

  const blocks = form.querySelectorAll(".relais-proof");
  const show = () => {
    const chosen = form.querySelector("input[name='methode']:checked")?.value;
    blocks.forEach((b) => { b.hidden = b.dataset.methode !== chosen; });
  };
  form.querySelectorAll("input[name='methode']").forEach((r) => r.addEventListener("change", show));
  show();

  // The signature pad.
  const pad = document.getElementById("signature-pad");
  const kept = document.getElementById("signature");
  const clear = document.getElementById("signature-effacer");
  form.querySelectorAll(".relais-noscript").forEach((p) => { p.hidden = true; });
  if (pad && kept && clear) {
    pad.hidden = false;
    clear.hidden = false;
    const ink = pad.getContext("2d");
    const blank = () => {
      ink.fillStyle = "#fff";
      ink.fillRect(0, 0, pad.width, pad.height);
      ink.strokeStyle = "#000091";
      ink.lineWidth = 3;
      ink.lineCap = "round";
      ink.lineJoin = "round";
    };
    blank();
    if (kept.value) {
      const image = new Image();
      image.onload = () => ink.drawImage(image, 0, 0);
      image.src = kept.value;
    }
    const at = (event) => {
      const box = pad.getBoundingClientRect();
      return [(event.clientX - box.left) * pad.width / box.width,
              (event.clientY - box.top) * pad.height / box.height];
    };
    let drawing = false;
    pad.addEventListener("pointerdown", (event) => {
      drawing = true;
      pad.setPointerCapture(event.pointerId);
      const [x, y] = at(event);
      ink.beginPath();
      ink.moveTo(x, y);
      ink.lineTo(x + 0.1, y + 0.1);
      ink.stroke();
      event.preventDefault();
    });
    pad.addEventListener("pointermove", (event) => {
      if (!drawing) return;
      const [x, y] = at(event);
      ink.lineTo(x, y);
      ink.stroke();
      event.preventDefault();
    });
    const done = () => {
      if (!drawing) return;
      drawing = false;
      kept.value = pad.toDataURL("image/png");
    };
    pad.addEventListener("pointerup", done);
    pad.addEventListener("pointercancel", done);
    clear.addEventListener("click", () => { blank(); kept.value = ""; });
  }

  // The photo of the signed paper form.
  const file = document.getElementById("photo-fichier");
  const photo = document.getElementById("photo");
  const preview = document.getElementById("photo-apercu");
  if (file && photo && preview) {
    file.addEventListener("change", async () => {
      const chosen = file.files?.[0];
      if (!chosen) return;
      const bitmap = await createImageBitmap(chosen);
      let side = 1600;
      let url = "";
      for (let quality = 0.8; ; quality -= 0.15) {
        const scale = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
        const canvas = document.createElement("canvas");
        canvas.width = Math.round(bitmap.width * scale);
        canvas.height = Math.round(bitmap.height * scale);
        canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
        url = canvas.toDataURL("image/jpeg", Math.max(quality, 0.4));
        if (url.length <= MAX_URL || side < 400) break;
        if (quality < 0.5) { side = Math.round(side * 0.75); quality = 0.95; }
      }
      photo.value = url;
      preview.src = url;
      preview.hidden = false;
    });
  }
})();
