// The checks in the order they run. Order matters twice: cheap SDK checks first, so a broken
// build fails fast; drain.shared-exit last, because it stops the shared gateway.
import chat from './chat.mjs';
import stream from './stream.mjs';
import fakellmFormats from './fakellm_formats.mjs';
import models from './models.mjs';
import errors from './errors.mjs';
import auth from './auth.mjs';
import identity from './identity.mjs';
import jwt from './jwt.mjs';
import revocation from './revocation.mjs';
import hostile from './hostile.mjs';
import sessions from './sessions.mjs';
import traces from './traces.mjs';
import checkpoints from './checkpoints.mjs';
import tasks from './tasks.mjs';
import state from './state.mjs';
import credentials from './credentials.mjs';
import idempotency from './idempotency.mjs';
import ops from './ops.mjs';
import routing from './routing.mjs';
import providers from './providers.mjs';
import messages from './messages.mjs';
import drain from './drain.mjs';

export function allChecks() {
    return [...chat, ...stream, ...fakellmFormats, ...models, ...errors, ...auth, ...identity, ...jwt, ...revocation, ...hostile, ...sessions, ...traces, ...checkpoints, ...tasks, ...state, ...credentials, ...idempotency, ...routing, ...providers, ...messages, ...ops, ...drain];
}
