// Free loopback ports: bind port 0, read the port the kernel chose, close. There is a window in
// which another process may take the port; proc.mjs retries a start that fails to bind.
import net from 'node:net';

export function freePort(host = '127.0.0.1') {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen({ host, port: 0, exclusive: true }, () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

// A port nothing listens on: a freed port, which stays closed unless someone races for it.
export const closedPort = freePort;
