// The email, credit_card and api_key presets through the real binary, on
// spellings that a reader takes for an address, a card number or a key.
// Cards are split by dots, slashes, line breaks, tabs or dashes, or written
// in Arabic-Indic and other decimal digits. Addresses have IDNA's
// ideographic full stops for domain dots. Values carry combining marks or
// have punctuation around them. A mask route must replace exactly the
// original bytes, and a block route must reject. Look-alike text (dates,
// versions, phone numbers, decimals, a line that ends in a number, names
// shaped like keys) must reach the upstream as sent.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import { eventData, request, splitEvents, startGateway, startMock, stopAll } from './lib/harness.mjs';

const RULES = { type: 'regex', apply_to: ['request', 'response'], presets: ['email', 'credit_card', 'api_key'] };

/* Spellings of the test card 4111 1111 1111 1111 and of jane@example.com
 * inside a sentence: the rule that finds each, and the sentence masked. */
const ARABIC_INDIC_CARD = '\u0664' + '\u0661'.repeat(15);
const DEVANAGARI_CARD = '\u096a\u0967\u0967\u0967-\u0967\u0967\u0967\u0967-\u0967\u0967\u0967\u0967-\u0967\u0967\u0967\u0967';
const CARD_MASKED = 'card [REDACTED:credit_card] ok';
/* The part of an OpenAI project key after "sk-proj-": mixed case and digits. */
const PROJECT_KEY_BODY = 'Ab3dEfGh1jKlMnOpQr5tUvWxYz0123456789-_abcdEFGH';
const SPELLINGS = {
  'a card with dots': { text: 'card 4111.1111.1111.1111 ok', rule: 'credit_card', masked: CARD_MASKED },
  'a card with slashes': { text: 'card 4111/1111/1111/1111 ok', rule: 'credit_card', masked: CARD_MASKED },
  'a card on four lines': {
    text: 'card\n4111\n1111\n1111\n1111\nexpires 12/27',
    rule: 'credit_card',
    masked: 'card\n[REDACTED:credit_card]\nexpires 12/27',
  },
  'a card on four CRLF lines': {
    text: 'card\r\n4111\r\n1111\r\n1111\r\n1111\r\nok',
    rule: 'credit_card',
    masked: 'card\r\n[REDACTED:credit_card]\r\nok',
  },
  'a card in Arabic-Indic digits': { text: `card ${ARABIC_INDIC_CARD} ok`, rule: 'credit_card', masked: CARD_MASKED },
  'a card in Devanagari digits with hyphens': { text: `card ${DEVANAGARI_CARD} ok`, rule: 'credit_card', masked: CARD_MASKED },
  'a card in mixed digits on lines': {
    text: 'card \u06f4\u06f1\u06f1\u06f1\n1111\n\u06f1\u06f1\u06f1\u06f1\n1111 ok',
    rule: 'credit_card',
    masked: CARD_MASKED,
  },
  'an address with an ideographic full stop': {
    text: 'mail jane@example\u3002com now', rule: 'email', masked: 'mail [REDACTED:email] now',
  },
  'an address with a half-width ideographic full stop': {
    text: 'mail jane@example\uff61com now', rule: 'email', masked: 'mail [REDACTED:email] now',
  },
  'an address with a combining acute after the @': {
    text: 'mail jane@\u0301example.com now', rule: 'email', masked: 'mail [REDACTED:email] now',
  },
  'a card with overlines on its first digits': {
    text: 'card 4\u03051\u030511 1111 1111 1111 ok', rule: 'credit_card', masked: CARD_MASKED,
  },
  'a card with a low line after each group': {
    text: 'card 4111\u0332 1111\u0332 1111\u0332 1111\u0332 ok', rule: 'credit_card', masked: CARD_MASKED,
  },
  'an address before two hyphens': {
    text: 'Contact jane@example.com--she leads', rule: 'email', masked: 'Contact [REDACTED:email]--she leads',
  },
  'an address before a hyphenated word': {
    text: 'a jane@example.com-based team', rule: 'email', masked: 'a [REDACTED:email]-based team',
  },
  'an address after a colon and a hyphen': { text: 'see:-jane@example.com', rule: 'email', masked: 'see:-[REDACTED:email]' },
  'an address after a dot': { text: '.jane@example.com', rule: 'email', masked: '.[REDACTED:email]' },
  'an address after a plus': { text: '+jane@example.com', rule: 'email', masked: '+[REDACTED:email]' },
  'a card after a step number': { text: 'Step 3 4111 1111 1111 1111', rule: 'credit_card', masked: 'Step 3 [REDACTED:credit_card]' },
  'a card split by tabs': { text: 'card 4111\t1111\t1111\t1111 ok', rule: 'credit_card', masked: CARD_MASKED },
  'a card split by two spaces': { text: 'card 4111  1111  1111  1111 ok', rule: 'credit_card', masked: CARD_MASKED },
  'a card split by en dashes': { text: 'card 4111\u20131111\u20131111\u20131111 ok', rule: 'credit_card', masked: CARD_MASKED },
  'a card split by underscores': { text: 'card 4111_1111_1111_1111 ok', rule: 'credit_card', masked: CARD_MASKED },
  'a project key after an underscore': {
    text: 'my_sk-proj-abcdefghijklmnopqrstuvwx1234 ok', rule: 'api_key', masked: 'my_[REDACTED:api_key] ok',
  },
  'a project key after a word': {
    text: `keysk-proj-${PROJECT_KEY_BODY} ok`, rule: 'api_key', masked: 'key[REDACTED:api_key] ok',
  },
  'an AWS key id before a letter': { text: 'AKIAIOSFODNN7EXAMPLEx', rule: 'api_key', masked: '[REDACTED:api_key]x' },
  'an AWS key id after an underscore': { text: 'aws_AKIAIOSFODNN7EXAMPLE', rule: 'api_key', masked: 'aws_[REDACTED:api_key]' },
  'a GitHub token before a hyphen': {
    text: 'ghp_0123456789abcdefghijABCDEFGHIJ012345-old', rule: 'api_key', masked: '[REDACTED:api_key]-old',
  },
  'an address with ideographic full stops in CJK prose': {
    text: '\u8bf7\u53d1\u5230 jane@mail\u3002example\u3002co\u3002jp\u3002',
    rule: 'email',
    masked: '\u8bf7\u53d1\u5230 [REDACTED:email]\u3002',
  },
};

/* Text that neither preset may take: each must reach the upstream as sent
 * through the block route. */
const LOOK_ALIKES = {
  'dates with dots and slashes': 'Due 2024.01.02, paid 2024/01/05, card expires 12/27.',
  'version numbers': 'Upgrade from 10.0.19045.2965 to 1.2.3.4 today.',
  'phone numbers': 'Call 555.123.4567, +44 20 7946 0958 or 0800/123/4567.',
  'two decimal numbers': 'Readings 4111.1111 and 1111.1111, then 4111.1111 1111.1111.',
  'a sentence ending in a number, then a line of numbers': 'The total was 4111\n1111 1111 1111 units.',
  'a line that ends in a number': 'We sold 1234\nNext year 5678.\n',
  'a column of years': 'Years:\n2019\n2020\n2021\n2022\n',
  'Luhn-invalid cards': 'Order 4111.1111.1111.1112, \u0664' + '\u0661'.repeat(14) + '\u0662 and 4111/1111/1111/1112.',
  'a sentence ending in an ideographic full stop': 'Mail jane\u3002Then example\u3002com\u3002',
  'a package named like a key': 'pip install sk-learn-preprocessing-pipeline-helpers',
  'a branch named like a project key': 'git checkout task-proj-1234-fix-login-redirect-page',
  'a run of five four-digit groups': 'Serial 1234 4111 1111 1111 1111.',
};

function chat(content, extra = {}) {
  return { model: 'm', messages: [{ role: 'user', content }], ...extra };
}

async function post(gw, route, body, headers = {}) {
  const res = await request({
    port: gw.port, method: 'POST', path: '/v1/chat/completions', body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', 'x-filter': route, ...headers },
  });
  return { ...res, json: /json/.test(res.headers['content-type'] || '') ? JSON.parse(res.text) : null };
}

/* The content of every chunk of an SSE body, joined. */
function streamedContent(text) {
  return splitEvents(text).events.map(eventData)
    .filter((d) => d && d !== '[DONE]')
    .map((d) => JSON.parse(d).choices?.[0]?.delta?.content ?? '')
    .join('');
}

describe('presets: cards and addresses in other spellings', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway({
      backends: { mock: { url: mock.url } },
      filters: { pii: { ...RULES, action: 'mask' }, deny: { ...RULES, action: 'block' } },
      routes: [
        { name: 'mask', match: { path: '/v1/chat/completions', headers: { 'x-filter': 'mask' } },
          backends: ['mock'], filters: ['pii'] },
        { name: 'block', match: { path: '/v1/chat/completions', headers: { 'x-filter': 'block' } },
          backends: ['mock'], filters: ['deny'] },
      ],
    });
  });
  afterEach(() => gw?.checkErrors());
  after(stopAll);

  for (const [name, { text, rule, masked }] of Object.entries(SPELLINGS)) {
    it(`masks the original bytes of ${name}`, async () => {
      await mock.reset();
      const res = await post(gw, 'mask', chat(text));

      assert.equal(res.status, 200, res.text);
      assert.equal(JSON.parse((await mock.lastRequest()).body).messages[0].content, masked);
      const line = await gw.waitForAccess((l) => l.request_id === res.headers['x-request-id']);
      assert.deepEqual(line.filters, [{ filter: 'pii', rule, action: 'mask', side: 'request', count: 1 }]);
    });

    it(`blocks ${name}`, async () => {
      await mock.reset();
      const res = await post(gw, 'block', chat(text));

      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.error.code, 'content_filter');
      assert.match(res.json.error.message, new RegExp(`"deny" \\(rule "${rule}"\\)`));
      assert.equal((await mock.stats()).requests, 0);
    });

    it(`masks ${name} in an answer`, async () => {
      const res = await post(gw, 'mask', chat('hi'), { 'x-mock': `content=${encodeURIComponent(text)}` });

      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.choices[0].message.content, masked);
    });
  }

  for (const [name, text] of Object.entries(LOOK_ALIKES)) {
    it(`passes ${name}`, async () => {
      await mock.reset();
      const res = await post(gw, 'block', chat(text));

      assert.equal(res.status, 200, res.text);
      assert.equal(JSON.parse((await mock.lastRequest()).body).messages[0].content, text);
    });
  }

  it('masks a split stream of Arabic-Indic lines', async () => {
    const card = ['\u0664\u0661\u0661\u0661', ...Array(3).fill('\u0661'.repeat(4))].join('\n');
    const text = `Card\n${card}\nok.`;
    for (let cut = 1; cut < text.length; cut++) {
      const pieces = [text.slice(0, cut), text.slice(cut)].map(encodeURIComponent).join('|');
      const res = await post(gw, 'mask', chat('hi', { stream: true }), { 'x-mock': `content=${pieces}` });

      assert.equal(res.status, 200);
      assert.equal(streamedContent(res.text), 'Card\n[REDACTED:credit_card]\nok.', `cut at ${cut}`);
    }
  });

  it('masks a split stream of a card with combining marks', async () => {
    const text = 'Card 4\u0332111 1111\u0305 1111 1111\u20dd ok.';
    for (let cut = 1; cut < text.length; cut++) {
      const pieces = [text.slice(0, cut), text.slice(cut)].map(encodeURIComponent).join('|');
      const res = await post(gw, 'mask', chat('hi', { stream: true }), { 'x-mock': `content=${pieces}` });

      assert.equal(res.status, 200);
      assert.equal(streamedContent(res.text), 'Card [REDACTED:credit_card] ok.', `cut at ${cut}`);
    }
  });

  it('blocks a streamed ideographic full stop', async () => {
    const pieces = ['Write to jane@exam', 'ple\u3002c', 'om today', ' and more'];
    const res = await post(gw, 'block', chat('hi', { stream: true }),
      { 'x-mock': `content=${pieces.map(encodeURIComponent).join('|')}` });

    assert.equal(res.status, 200);
    const data = splitEvents(res.text).events.map(eventData);
    assert.equal(data.at(-1), '[DONE]');
    assert.equal(JSON.parse(data.at(-2)).choices[0].finish_reason, 'content_filter');
    assert.doesNotMatch(streamedContent(res.text), /jane|ple|com/);
  });
});
