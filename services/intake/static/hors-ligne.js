// The outreach app without a network (services/intake/screens/hors-ligne.html).
//
// Each contact, with the person's answer, is sealed here to Relais's public key before it
// touches the device's storage (ECDH P-256 + HKDF-SHA-256 + AES-256-GCM, as
// services/runtime/offline.py opens it): the device never holds a key that opens its queue.
// The queue lives in IndexedDB ("relais-terrain"): the sealed entry, and in clear only when
// it was made, whether it carries an answer, and what failed and why. When the network is
// there, entries are sent in the order they were made, each under its own id (the
// idempotency key): the contact (POST /terrain/envoi), then the person's answer
// (POST /terrain/accord/{intake}/envoi). Sent entries are deleted; entries older than the
// page's data-keep-hours are deleted unsent; signing out wipes the whole site's storage.
(() => {
  const form = document.getElementById("fiche");
  if (!form) return;
  const CONTEXT = "relais/offline-queue/v1";
  const org = form.dataset.org;
  const keepHours = Number(form.dataset.keepHours || "72");
  const publicKey = JSON.parse(document.getElementById("cle-publique").textContent);
  const encoder = new TextEncoder();
  const status = document.getElementById("file-etat");
  const list = document.getElementById("file-liste");
  const sendNow = document.getElementById("envoyer");
  const network = document.getElementById("reseau");
  const networkText = document.getElementById("reseau-texte");
  const messages = document.getElementById("fiche-messages");
  let sent = 0;
  let dropped = 0;
  let sending = false;
  let lastProblem = "";

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/terrain/sw.js", { scope: "/" }).catch(() => {});
  }

  // --- the queue ---------------------------------------------------------------------------
  const opened = new Promise((resolve, reject) => {
    const request = indexedDB.open("relais-terrain", 1);
    request.onupgradeneeded = () => request.result.createObjectStore("file", { keyPath: "id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const store = async (mode) => (await opened).transaction("file", mode).objectStore("file");
  const done = (request) => new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const entries = async () => (await done((await store("readonly")).getAll()))
    .sort((a, b) => a.made - b.made);
  const put = async (entry) => done((await store("readwrite")).put(entry));
  const remove = async (id) => done((await store("readwrite")).delete(id));

  // --- sealing -----------------------------------------------------------------------------
  const b64url = (buffer) => {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i += 8192) {  // in pieces: large entries fit any engine
      text += String.fromCharCode(...bytes.subarray(i, i + 8192));
    }
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  async function seal(id, content) {
    const server = await crypto.subtle.importKey(
      "jwk", { kty: "EC", crv: "P-256", x: publicKey.x, y: publicKey.y, ext: true },
      { name: "ECDH", namedCurve: "P-256" }, false, []);
    const ephemeral = await crypto.subtle.generateKey(
      { name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
    const shared = await crypto.subtle.deriveBits(
      { name: "ECDH", public: server }, ephemeral.privateKey, 256);
    const material = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
    const key = await crypto.subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: encoder.encode(CONTEXT) },
      material, { name: "AES-GCM", length: 256 }, false, ["encrypt"]);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const ct = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: encoder.encode(`${CONTEXT}/${org}/${id}`) },
      key, encoder.encode(JSON.stringify(content)));
    const epk = await crypto.subtle.exportKey("raw", ephemeral.publicKey);
    return { id, kid: publicKey.kid, epk: b64url(epk), iv: b64url(iv), ct: b64url(ct) };
  }

  // --- what is shown -----------------------------------------------------------------------
  const time = (ms) => new Date(ms).toLocaleTimeString("fr-FR", { hour: "2-digit", minute: "2-digit" });
  async function show() {
    const everything = await entries();
    const all = everything.filter((e) => e.sealed);
    const notices = everything.filter((e) => !e.sealed);
    const waiting = all.filter((e) => !e.failed);
    const failed = all.filter((e) => e.failed);
    const parts = [];
    parts.push(waiting.length === 0 ? "Aucun contact en attente d'envoi."
      : `${waiting.length} contact${waiting.length > 1 ? "s" : ""} en attente d'envoi.`);
    if (failed.length) parts.push(`${failed.length} en échec : voyez pourquoi ci-dessous.`);
    if (notices.length) parts.push(`${notices.length} à vérifier ci-dessous.`);
    if (sent) parts.push(`${sent} envoyé${sent > 1 ? "s" : ""} depuis l'ouverture de la page.`);
    if (dropped) parts.push(`${dropped} effacé${dropped > 1 ? "s" : ""} sans être envoyé${dropped > 1 ? "s" : ""} : plus de ${keepHours} heures d'attente.`);
    if (lastProblem) parts.push(lastProblem);
    status.textContent = parts.join(" ");
    list.replaceChildren(...everything.map((e) => {
      const item = document.createElement("li");
      item.textContent = `Contact de ${time(e.made)}${e.answer ? ", avec la réponse de la personne" : ""} : `
        + (e.notice ? `envoyé. ${e.notice} ` : e.failed ? `échec. ${e.failed} ` : "en attente.");
      if (e.contact) {
        const open = document.createElement("a");
        open.href = e.contact;
        open.className = "fr-link fr-ml-1w";
        open.textContent = "Ouvrir le contact";
        item.append(open);
      }
      if (e.failed || e.notice) {
        const forget = document.createElement("button");
        forget.type = "button";
        forget.className = "fr-btn fr-btn--tertiary-no-outline fr-btn--sm fr-ml-1w";
        forget.textContent = e.notice ? "Vu" : "Effacer de l'appareil";
        forget.addEventListener("click", async () => { await remove(e.id); await show(); });
        item.append(forget);
      }
      return item;
    }));
    sendNow.hidden = waiting.length === 0 || !navigator.onLine;
  }
  function showNetwork() {
    const online = navigator.onLine;
    network.className = `fr-alert fr-alert--sm fr-mb-3w fr-alert--${online ? "success" : "warning"}`;
    networkText.textContent = online ? "Réseau disponible : ce qui attend part tout seul."
      : "Pas de réseau : les contacts sont gardés chiffrés sur l'appareil.";
  }

  // --- recording -----------------------------------------------------------------------------
  function values(names) {
    const data = new FormData(form);
    const out = {};
    for (const name of names) {
      const all = data.getAll(name).map(String).filter((v) => v !== "");
      const many = form.querySelectorAll(`input[type=checkbox][name="${name}"]`).length > 0;
      out[name] = many ? all : (all[0] || "");
    }
    return out;
  }
  function refuse(text) {
    messages.replaceChildren();
    const p = document.createElement("p");
    p.className = "fr-message fr-message--error";
    p.textContent = text;
    messages.append(p);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const decision = event.submitter?.value || "accord";
    const now = new Date().toISOString();
    const contact = values(["lieu", "besoins", "situation", "age", "commune", "duree", "note",
      "prenom", "nom", "telephone", "courriel"]);
    contact.moment = now;
    if (!contact.besoins.length) return refuse("Choisissez au moins un besoin.");
    let answer = null;
    if (decision === "accord") {
      answer = values(["destinataires", "finalites", "donnees", "methode", "temoin", "signature"]);
      if (!answer.destinataires.length) return refuse("Choisissez au moins une structure à qui transmettre.");
      if (!answer.finalites.length) return refuse("Choisissez au moins une finalité.");
      if (!answer.donnees.length) return refuse("Choisissez au moins une catégorie d'informations.");
      if (answer.methode === "signed_screen" && !answer.signature) return refuse("Faites signer la personne dans le cadre.");
      if (answer.methode === "oral_witnessed" && !answer.temoin.trim()) return refuse("Donnez le nom du témoin.");
      if (answer.methode !== "signed_screen") answer.signature = "";
    } else {
      answer = {};
    }
    Object.assign(answer, { decision, notice: form.dataset.notice, moment: now });
    const id = crypto.randomUUID();
    try {
      const sealed = await seal(id, { contact, accord: answer });
      await put({ id, made: Date.now(), answer: decision === "accord", sealed, failed: "", org });
    } catch {
      return refuse("L'appareil n'a pas pu garder ce contact (mémoire pleine ?). Rien n'est gardé : réessayez, ou notez-le sur papier.");
    }
    form.reset();
    document.getElementById("signature-effacer")?.click();
    form.querySelectorAll("input[name='methode']")[0]?.dispatchEvent(new Event("change"));
    messages.replaceChildren();
    const kept = document.createElement("p");
    kept.className = "fr-message fr-message--valid";
    kept.textContent = `Contact de ${time(Date.now())} gardé sur l'appareil, chiffré.`;
    messages.append(kept);
    window.scrollTo({ top: 0 });
    await show();
    sendAll();
  });

  // --- sending -----------------------------------------------------------------------------
  async function freshPage() {
    const page = await fetch("/terrain/hors-ligne", { cache: "no-store", credentials: "same-origin" });
    if (!page.ok || page.redirected) return null;
    const html = new DOMParser().parseFromString(await page.text(), "text/html");
    const token = html.querySelector("input[name='csrf']")?.value;
    return token ? { token, org: html.getElementById("fiche")?.dataset.org } : null;
  }
  async function post(path, body, token) {
    const response = await fetch(path, {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token,
                 "X-Relais-Device-Time": new Date().toISOString() },
    });
    let said = {};
    try { said = await response.json(); } catch { said = {}; }
    return { status: response.status, said };
  }
  const retryLater = (status) => status === 401 || status === 403 || status === 409
    || status === 429 || status >= 500;

  async function sendAll() {
    if (sending || !navigator.onLine) return;
    sending = true;
    try {
      const waiting = (await entries()).filter((e) => e.sealed && !e.failed);
      if (!waiting.length) return;
      const fresh = await freshPage();
      if (!fresh) {
        lastProblem = "Reconnectez-vous pour envoyer ce qui attend.";
        return;
      }
      const { token } = fresh;
      lastProblem = "";
      for (const entry of waiting) {
        if (entry.org && entry.org !== fresh.org) {
          lastProblem = "Ce qui attend a été enregistré pour une autre structure : reconnectez-vous avec un compte de cette structure pour l'envoyer.";
          return;
        }
        const contact = await post("/terrain/envoi", entry.sealed, token);
        if (retryLater(contact.status)) { lastProblem = contact.said.detail || "Envoi interrompu : nouvel essai plus tard."; return; }
        if (contact.status >= 400) { entry.failed = contact.said.detail || "Refusé par Relais."; await put(entry); continue; }
        entry.contact = contact.said.contact;
        const answer = await post(`/terrain/accord/${contact.said.intake_id}/envoi`, entry.sealed, token);
        if (retryLater(answer.status)) { lastProblem = answer.said.detail || "Envoi interrompu : nouvel essai plus tard."; return; }
        if (answer.status >= 400) { entry.failed = `Le contact est enregistré, pas la réponse de la personne : ${answer.said.detail || "refusée par Relais."} Ouvrez le contact pour recueillir son accord.`; await put(entry); continue; }
        await remove(entry.id);
        if (answer.said.uncovered?.length) {  // what routing proposed is not what was ticked
          await put({ id: `${entry.id}:verifier`, made: entry.made, answer: true, contact: entry.contact,
            notice: `Relais propose ${answer.said.uncovered.join(", ")}, que la personne n'a pas acceptée : rien n'y est transmis. Ouvrez le contact pour en parler avec elle.` });
        }
        sent += 1;
        await show();
      }
    } catch {
      lastProblem = "Envoi interrompu par le réseau : nouvel essai au retour du réseau.";
    } finally {
      sending = false;
      await show();
    }
  }

  // --- the page's life -----------------------------------------------------------------------
  async function forgetOld() {
    const limit = Date.now() - keepHours * 3600 * 1000;
    for (const entry of await entries()) {
      if (entry.made < limit) { await remove(entry.id); if (entry.sealed) dropped += 1; }
    }
  }
  sendNow.addEventListener("click", sendAll);
  window.addEventListener("online", () => { showNetwork(); sendAll(); });
  window.addEventListener("offline", () => { showNetwork(); show(); });
  showNetwork();
  forgetOld().then(show).then(sendAll);
  setInterval(sendAll, 30000);
})();
