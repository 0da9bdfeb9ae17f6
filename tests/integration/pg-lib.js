// A throwaway PostgreSQL 15 cluster for test-store-pg.js (issue 14):
// initdb + postgres in a temporary folder, run as the `postgres` user
// (PostgreSQL refuses root; setpriv execs, so the PID we hold is the
// postmaster's), listening on 127.0.0.1 only at a port picked here, scram
// password auth; stopped by PID (SIGINT: fast shutdown, SIGKILL after 10 s).
// Every wait is bounded.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const net = require('node:net');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn, execFileSync } = require('node:child_process');

const PGBIN = process.env.MAILCONN_PGBIN || '/usr/lib/postgresql/15/bin';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function available() {
    return fs.existsSync(path.join(PGBIN, 'initdb')) && fs.existsSync('/usr/bin/psql');
}

async function freePort() {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = srv.address();
    await new Promise((r) => srv.close(r));
    return port;
}

function asPostgres(args) {
    if (process.getuid() !== 0) return args;
    return ['/usr/bin/setpriv', '--reuid=postgres', '--regid=postgres', '--init-groups', ...args];
}

/** Start a cluster; returns { port, superPw, conninfo(db, user, pw), psql(sql, opts), stop() }. */
async function startPostgres() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailconn-pg-'));
    const data = path.join(dir, 'data');
    const superPw = crypto.randomBytes(12).toString('hex');
    fs.writeFileSync(path.join(dir, 'pw'), `${superPw}\n`, { mode: 0o600 });
    if (process.getuid() === 0) {
        const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
        const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
        fs.chownSync(dir, uid, gid);
        fs.chownSync(path.join(dir, 'pw'), uid, gid);
    }
    fs.chmodSync(dir, 0o700);
    const init = asPostgres([path.join(PGBIN, 'initdb'), '-D', data, '-U', 'postgres',
        '--auth=scram-sha-256', `--pwfile=${path.join(dir, 'pw')}`, '-E', 'UTF8',
        '--no-locale', '--no-sync']);
    execFileSync(init[0], init.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120000 });
    const port = await freePort();
    const argv = asPostgres([path.join(PGBIN, 'postgres'), '-D', data,
        '-c', 'listen_addresses=127.0.0.1', '-c', `port=${port}`,
        '-c', `unix_socket_directories=${dir}`, '-c', 'fsync=off',
        '-c', 'log_min_messages=warning']);
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d) => { log += d; });
    const exited = new Promise((r) => child.once('exit', r));
    let alive = true;
    exited.then(() => { alive = false; });
    const pg = {
        port, superPw, pid: child.pid, dir,
        log: () => log,
        conninfo: (db = 'postgres', user = 'postgres', pw = superPw) =>
            `host=127.0.0.1 port=${port} dbname=${db} user=${user} password=${pw}`,
        /** psql -c sql as the superuser: stdout (rows, '|'-separated). */
        psql(sql, o = {}) {
            return new Promise((resolve, reject) => {
                const p = spawn('/usr/bin/psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1',
                    pg.conninfo(o.db || 'postgres'), '-c', sql],
                { stdio: ['ignore', 'pipe', 'pipe'] });
                let out = '';
                let err = '';
                const timer = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs || 30000);
                p.stdout.on('data', (d) => { out += d; });
                p.stderr.on('data', (d) => { err += d; });
                p.on('close', (code) => {
                    clearTimeout(timer);
                    if (code === 0) resolve(out);
                    else reject(new Error(`psql ${sql}: exit ${code}: ${err}`));
                });
            });
        },
        /** An interactive psql session (a second node's connection): send(sql)
         *  writes a line; waitOut(re) waits for its output; kill() ends it. */
        session(db) {
            const p = spawn('/usr/bin/psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1',
                pg.conninfo(db)], { stdio: ['pipe', 'pipe', 'pipe'] });
            let out = '';
            p.stdout.on('data', (d) => { out += d; });
            p.stderr.on('data', (d) => { out += d; });
            const gone = new Promise((r) => p.once('exit', r));
            return {
                pid: p.pid,
                send: (sql) => p.stdin.write(`${sql}\n`),
                async waitOut(re, ms = 15000) {
                    const end = Date.now() + ms;
                    while (!re.test(out)) {
                        if (Date.now() > end) throw new Error(`psql session: no ${re} in: ${out}`);
                        await sleep(20);
                    }
                },
                async kill() {
                    p.kill('SIGKILL');
                    await gone;
                },
                async end() {
                    p.stdin.end();
                    const t = setTimeout(() => p.kill('SIGKILL'), 10000);
                    await gone;
                    clearTimeout(t);
                },
            };
        },
        async stop() {
            if (alive) {
                child.kill('SIGINT');
                const t = setTimeout(() => child.kill('SIGKILL'), 10000);
                await exited;
                clearTimeout(t);
            }
            fs.rmSync(dir, { recursive: true, force: true });
        },
        alive: () => alive,
    };
    process.on('exit', () => { if (alive) try { child.kill('SIGKILL'); } catch (_) { /* gone */ } });
    // ready: a query answers (bounded)
    const end = Date.now() + 30000;
    for (;;) {
        if (!alive) throw new Error(`postgres exited: ${log}`);
        try {
            await pg.psql('SELECT 1', { timeoutMs: 5000 });
            break;
        } catch (e) {
            if (Date.now() > end) throw new Error(`postgres not ready: ${e.message}\n${log}`);
            await sleep(100);
        }
    }
    return pg;
}

module.exports = { available, startPostgres };
