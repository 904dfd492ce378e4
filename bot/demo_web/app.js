// Loyalty Desk demo page: the Bot API emulator's chats drawn like Telegram, live over SSE.
// Message bodies arrive as HTML the server built from Telegram entities (text escaped);
// everything else is set with textContent.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const chats = new Map(); // id -> {info, messages: Map(id -> view), unread}
  let users = [];
  let current = null;
  let replyTo = null;

  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const api = async (path, body) => {
    const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!r.ok) throw new Error(await r.text());
    return r.json();
  };
  let toastTimer = null;
  const toast = (text) => {
    const t = $("#toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 3500);
  };
  const actingUser = () => Number($("#as-user").value);
  const plain = (view) => {
    const d = document.createElement("div");
    d.innerHTML = view.html;
    const media = view.media ? { photo: "🖼 Фото", voice: "🎤 Голосовое", document: "📎 " + (view.media.name || "Файл") }[view.media.kind] : "";
    return (media ? media + " " : "") + d.textContent;
  };
  const time = (ts) => ts ? new Date(ts * 1000).toLocaleTimeString("ru-RU", { hour: "2-digit", minute: "2-digit" }) : "";

  function renderChatList() {
    const nav = $("#chats");
    nav.textContent = "";
    for (const [id, chat] of chats) {
      const b = el("button", "chat-item" + (id === current ? " active" : ""));
      b.dataset.chat = id;
      const title = el("span", "title");
      title.append(el("span", "", chat.info.title));
      if (chat.unread) title.append(el("span", "badge", String(chat.unread)));
      const msgs = [...chat.messages.values()];
      b.append(title, el("span", "last", msgs.length ? plain(msgs[msgs.length - 1]) : "нет сообщений"));
      b.addEventListener("click", () => { openChat(id); document.body.classList.remove("menu-open"); });
      nav.append(b);
    }
  }

  function renderMessage(view) {
    const m = el("div", "msg " + (view.from.bot ? "bot" : "user"));
    m.dataset.id = view.message_id;
    m.append(el("div", "who", view.from.name));
    if (view.reply_to) {
      const q = el("div", "quote");
      q.append(el("b", "", view.reply_to.from), el("span", "", view.reply_to.text));
      q.addEventListener("click", () => flash(view.reply_to.message_id));
      m.append(q);
    }
    if (view.media) {
      if (view.media.kind === "photo") {
        const img = el("img");
        img.src = view.media.url;
        img.alt = "график";
        img.loading = "lazy";
        img.addEventListener("click", () => window.open(view.media.url, "_blank"));
        img.addEventListener("load", () => { if (nearBottom) scrollDown(); });
        m.append(img);
      } else if (view.media.kind === "voice") {
        const a = el("audio");
        a.controls = true;
        a.preload = "none";
        a.src = view.media.url;
        m.append(a);
      } else {
        const a = el("a", "doc", "📎 " + view.media.name);
        a.href = view.media.url;
        a.download = view.media.name;
        m.append(a);
      }
    }
    if (view.html) {
      const body = el("div", "body");
      body.innerHTML = view.html; // built server-side from entities; the text itself is escaped
      body.querySelectorAll(".tg-spoiler").forEach((s) => s.addEventListener("click", () => s.classList.add("shown")));
      m.append(body);
    }
    if (view.keyboard && view.keyboard.length) {
      const kb = el("div", "kb");
      for (const row of view.keyboard) {
        const r = el("div", "row");
        for (const b of row) {
          if (b.url) {
            const a = el("a", "", b.text + " ↗");
            a.href = b.url;
            a.target = "_blank";
            a.rel = "noopener noreferrer";
            r.append(a);
          } else {
            const btn = el("button", "", b.text);
            btn.type = "button";
            btn.addEventListener("click", () => pressButton(view, b, btn));
            r.append(btn);
          }
        }
        kb.append(r);
      }
      m.append(kb);
    }
    const meta = el("div", "meta");
    const reply = el("button", "reply", "↩ Ответить");
    reply.type = "button";
    reply.addEventListener("click", () => startReply(view));
    meta.append(reply);
    if (view.edited) meta.append(el("span", "edited", "изменено"));
    meta.append(el("span", "", time(view.date)));
    m.append(meta);
    return m;
  }

  let nearBottom = true;
  const box = () => $("#messages");
  const scrollDown = () => { box().scrollTop = box().scrollHeight; };
  function flash(id) {
    const target = box().querySelector(`.msg[data-id="${id}"]`);
    if (!target) return;
    target.scrollIntoView({ block: "center" });
    target.classList.add("flash");
    setTimeout(() => target.classList.remove("flash"), 1200);
  }

  function renderMessages() {
    const chat = chats.get(current);
    const b = box();
    b.textContent = "";
    if (!chat || !chat.messages.size) {
      b.append(el("div", "empty", "Сообщений пока нет. Нажмите «Плохо» на панели — негатив придёт в группу офиса; руководителю напишите /report 7d."));
      return;
    }
    for (const view of chat.messages.values()) b.append(renderMessage(view));
    scrollDown();
  }

  function openChat(id) {
    current = id;
    const chat = chats.get(id);
    chat.unread = 0;
    $("#chat-title").textContent = chat.info.title;
    if (chat.info.type === "private" && users.some((u) => u.id === id)) $("#as-user").value = String(id);
    cancelReply();
    renderChatList();
    renderMessages();
    location.hash = "chat=" + id;
  }

  function startReply(view) {
    replyTo = view.message_id;
    $("#reply-text").textContent = plain(view).slice(0, 100);
    $("#reply-bar").hidden = false;
    $("#text").focus();
  }
  function cancelReply() {
    replyTo = null;
    $("#reply-bar").hidden = true;
  }

  async function pressButton(view, b, btn) {
    btn.disabled = true;
    try {
      const answer = await api("/demo/api/button", { chat_id: view.chat_id, user_id: actingUser(), message_id: view.message_id, data: b.data });
      if (answer.text) toast(answer.text);
    } catch (e) {
      toast("Кнопка не сработала: " + e.message);
    } finally {
      btn.disabled = false;
    }
  }

  function apply(event) {
    const chat = chats.get(event.chat_id);
    if (!chat) return;
    const view = event.message;
    const b = box();
    const existing = current === event.chat_id ? b.querySelector(`.msg[data-id="${view.message_id}"]`) : null;
    if (event.kind === "delete") {
      chat.messages.delete(view.message_id);
      if (existing) existing.remove();
    } else {
      const isNew = !chat.messages.has(view.message_id);
      chat.messages.set(view.message_id, view);
      if (current === event.chat_id) {
        nearBottom = b.scrollHeight - b.scrollTop - b.clientHeight < 80;
        const node = renderMessage(view);
        if (existing) existing.replaceWith(node);
        else {
          const empty = b.querySelector(".empty");
          if (empty) empty.remove();
          b.append(node);
          if (nearBottom || !view.from.bot) scrollDown();
        }
      } else if (isNew) {
        chat.unread = (chat.unread || 0) + 1;
      }
    }
    renderChatList();
  }

  async function load() {
    const state = await (await fetch("/demo/api/state")).json();
    users = state.users;
    const sel = $("#as-user");
    const keep = sel.value;
    sel.textContent = "";
    for (const u of users) {
      const o = el("option", "", u.label);
      o.value = u.id;
      sel.append(o);
    }
    if (keep) sel.value = keep;
    const points = $("#point");
    points.textContent = "";
    for (const p of state.points) {
      const o = el("option", "", `${p.site} · ${p.name}`);
      o.value = `${p.site}/${p.point}`;
      points.append(o);
    }
    $("#sim-status").textContent = (state.traffic ? "Симулятор нажимает кнопки сам, примерно раз в несколько секунд." : "Симулятор выключен: нажимайте кнопки сами.")
      + (state.audio ? " Негативы приходят с записью разговора." : " Без espeak-ng — без записи разговора.");
    const seen = new Map([...chats].map(([id, c]) => [id, c.unread]));
    chats.clear();
    for (const c of state.chats) {
      chats.set(c.id, { info: { id: c.id, title: c.title, type: c.type }, messages: new Map(c.messages.map((m) => [m.message_id, m])), unread: seen.get(c.id) || 0 });
    }
    const fromHash = Number((location.hash.match(/chat=(-?\d+)/) || [])[1]);
    openChat(chats.has(current) ? current : chats.has(fromHash) ? fromHash : state.chats[0].id);
  }

  function listen() {
    const source = new EventSource("/demo/api/events");
    source.addEventListener("hello", () => {
      $("#live").classList.add("on");
      load(); // subscribed first, then the state: nothing falls between the two
    });
    source.addEventListener("message", (e) => apply(JSON.parse(e.data)));
    source.onerror = () => $("#live").classList.remove("on");
  }

  $("#composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("#text");
    const text = input.value.trim();
    if (!text || current === null) return;
    try {
      await api("/demo/api/send", { chat_id: current, user_id: actingUser(), text, reply_to: replyTo });
      input.value = "";
      cancelReply();
    } catch (err) {
      toast("Не отправлено: " + err.message);
    }
  });
  $("#reply-cancel").addEventListener("click", cancelReply);
  $("#menu").addEventListener("click", () => document.body.classList.toggle("menu-open"));
  document.querySelectorAll("[data-rate]").forEach((b) => b.addEventListener("click", async () => {
    const [site, point] = $("#point").value.split("/");
    try {
      await api("/demo/api/rate", { site, point, value: b.dataset.rate });
      $("#rate-status").textContent = `Отправлено: ${site}/${point} — ${b.textContent}`;
    } catch (err) {
      toast("Не отправлено: " + err.message);
    }
  }));

  listen();
})();
