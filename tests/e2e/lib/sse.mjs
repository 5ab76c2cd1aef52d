// Server-Sent Events: an incremental parser (WHATWG rules: LF, CRLF or CR line ends, "data"
// lines joined with LF, comments ignored, an event ends at a blank line) and a reader that runs a
// chat-completion stream over a RawConn and accumulates what the client would see.
import { StringDecoder } from 'node:string_decoder';

export class SSEParser {
    constructor() {
        this.decoder = new StringDecoder('utf8');
        this.pending = '';
        this.reset();
    }

    reset() {
        this.data = [];
        this.event = null;
        this.id = null;
        this.hasField = false;
    }

    // Feeds bytes (Buffer or string); returns the events completed by them.
    push(chunk) {
        this.pending += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
        const out = [];
        let start = 0;
        for (;;) {
            let i = start;
            const len = this.pending.length;
            while (i < len && this.pending[i] !== '\n' && this.pending[i] !== '\r') i++;
            if (i >= len) break;
            // A CR at the end of the buffer may be the first half of CRLF: wait for more.
            if (this.pending[i] === '\r' && i + 1 >= len) break;
            const line = this.pending.slice(start, i);
            start = this.pending[i] === '\r' && this.pending[i + 1] === '\n' ? i + 2 : i + 1;
            this.line(line, out);
        }
        this.pending = this.pending.slice(start);
        return out;
    }

    line(line, out) {
        if (line === '') {
            if (this.hasField) out.push({ event: this.event, data: this.data.join('\n'), id: this.id });
            this.reset();
            return;
        }
        if (line.startsWith(':')) return;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let value = c < 0 ? '' : line.slice(c + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        this.hasField = true;
        if (field === 'data') this.data.push(value);
        else if (field === 'event') this.event = value;
        else if (field === 'id') this.id = value;
    }

    // True when bytes of an unfinished event are pending (the stream was cut mid-event).
    get partial() {
        return this.pending.length > 0 || this.hasField;
    }
}

// Accumulates OpenAI chat.completion.chunk events the way a client would. feed(event) returns
// the parsed JSON (or '[DONE]'); afterwards: text, finishReason, usage, done (saw [DONE]),
// error (an event carrying {"error":...}), chunks (content pieces), eventsAfterDone.
export class ChatAccumulator {
    constructor() {
        this.text = '';
        this.pieces = 0;
        this.finishReason = null;
        this.usage = null;
        this.done = false;
        this.error = null;
        this.eventsAfterDone = 0;
        this.eventsAfterError = 0;
        this.events = 0;
        this.model = null;
        this.ids = new Set();
    }

    feed(ev) {
        this.events++;
        if (this.done) this.eventsAfterDone++;
        if (this.error) this.eventsAfterError++;
        if (ev.data === '[DONE]') {
            this.done = true;
            return '[DONE]';
        }
        let j;
        try {
            j = JSON.parse(ev.data);
        } catch {
            throw new Error(`SSE event data is not JSON: ${JSON.stringify(ev.data.slice(0, 200))}`);
        }
        if (j && j.error) {
            this.error = j.error;
            return j;
        }
        if (j.id) this.ids.add(j.id);
        if (j.model) this.model = j.model;
        if (j.usage) this.usage = j.usage;
        for (const c of j.choices || []) {
            const piece = c.delta && typeof c.delta.content === 'string' ? c.delta.content : '';
            if (piece) {
                this.text += piece;
                this.pieces++;
            }
            if (c.finish_reason) this.finishReason = c.finish_reason;
        }
        return j;
    }
}
