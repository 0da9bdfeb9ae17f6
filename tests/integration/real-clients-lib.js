// The real-clients harness shared by test-real-clients.js (issue 12) and
// test-real-clients-queue.js (issue 13): Debian's packages of the clients
// (and those of their Depends that this machine lacks, never default-mta or
// mail-transport-agent) fetched with `apt-get download` into the build
// tree's real-clients-cache (kept between runs) and unpacked with `dpkg -x`
// into a private folder; each client runs inside a private mount namespace
// (unshare) with an overlay on /usr/sbin whose upper layer holds
// /usr/sbin/sendmail: a wrapper that records its argv, stdin, stderr and
// exit code, then runs mailconn as `sendmail`.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');

const MTA = new Set(['default-mta', 'mail-transport-agent']);

// what each client needs from the archive (Depends are added as needed)
const CLIENTS = {
    mailx: ['bsd-mailx'],
    snail: ['s-nail'],
    mutt: ['mutt'],
    git: ['git-email', 'libmailtools-perl'],
    php: ['php-cli'],
    cron: ['cron'],
};

/** The machine's state that a run must not change, as text. */
function snapshot() {
    const out = [];
    const list = (d, depth, full) => {
        let names;
        try { names = fs.readdirSync(d).sort(); } catch (e) { out.push(`${d}: ${e.code}`); return; }
        for (const n of names) {
            const p = path.join(d, n);
            let st;
            try { st = fs.lstatSync(p); } catch (e) { out.push(`${p}: ${e.code}`); continue; }
            out.push(full ? `${p} ${st.mode} ${st.size} ${st.mtimeMs} ${st.ino}` : p);
            if (depth > 0 && st.isDirectory()) list(p, depth - 1, full);
        }
    };
    list('/usr/sbin', 0, true);
    list('/etc', 0, false);
    list('/etc/cron.d', 0, true);
    list('/etc/pam.d', 0, true);
    list('/var/spool', 2, true);
    for (const f of ['/usr/lib/sendmail', '/run/crond.pid', '/run/crond.reboot', '/var/run/crond.pid']) {
        out.push(`${f} ${fs.existsSync(f)}`);
    }
    return out.join('\n');
}

/**
 * A harness for one test file. build: the build root (the cache lives in
 * it). h.init(dir) makes dir/root (the unpacked clients), dir/calls (the
 * wrapper's records) and dir/sbin-upper; h.writeWrapper(env) writes the
 * wrapper with those MAILCONN_* variables (cron gives its jobs a clean
 * environment, so they are written in).
 */
function harness(build) {
    const h = {
        cache: path.join(build || '/nonexistent', 'real-clients-cache'),
        dir: null, root: null, wrapperLog: null,
    };
    let updated = false;
    let nsCount = 0;

    /** apt-get update, once, when the package lists are missing or stale. */
    async function aptUpdate() {
        if (updated) return;
        updated = true;
        await lib.run('apt-get', ['update'], { timeoutMs: 300000 });
    }

    async function installed(pkg) {
        const r = await lib.run('dpkg-query', ['-W', '-f=${db:Status-Status}', pkg]);
        return r.code === 0 && r.stdout === 'installed';
    }

    /** pkg and those of its (Pre)Depends this machine lacks, recursively; an
     *  alternative group naming an MTA is never followed (that is the point). */
    async function closure(pkgs) {
        const want = new Set();
        const seen = new Set();
        const queue = [...pkgs];
        while (queue.length) {
            const p = queue.shift();
            if (seen.has(p)) continue;
            seen.add(p);
            if (await installed(p)) continue;
            want.add(p);
            const depends = () => lib.run('apt-cache', ['depends', '--no-recommends', '--no-suggests',
                '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', p]);
            let r = await depends();
            if (r.code !== 0) {
                await aptUpdate();
                r = await depends();
            }
            if (r.code !== 0) throw new Error(`apt-cache depends ${p}: ${r.stderr.trim()}`);
            let group = [];
            for (const line of r.stdout.split('\n')) {
                const m = /^ {2}(\|)?(?:Pre)?Depends: (\S+)/.exec(line);
                if (!m) continue;
                group.push(m[2].replace(/:any$/, ''));
                if (m[1]) continue;   // an alternative: the group goes on
                const g = group;
                group = [];
                if (g.some((x) => MTA.has(x.replace(/[<>]/g, '')))) continue;
                let ok = false;
                for (const x of g) if (x.startsWith('<') || await installed(x)) ok = true;
                if (!ok) queue.push(g[0]);
            }
        }
        return [...want];
    }

    function cached(pkg) {
        try { return fs.readdirSync(h.cache).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb')); } catch (_) {
            return undefined;
        }
    }

    async function fetchDebs(pkgs) {
        fs.mkdirSync(h.cache, { recursive: true });
        const need = pkgs.filter((p) => !cached(p));
        if (!need.length) return;
        let r = await lib.run('apt-get', ['download', ...need], { cwd: h.cache, timeoutMs: 300000 });
        if (r.code !== 0) {
            // no package lists (or stale ones): one update, one more try
            await aptUpdate();
            r = await lib.run('apt-get', ['download', ...need.filter((p) => !cached(p))],
                { cwd: h.cache, timeoutMs: 300000 });
        }
        const still = pkgs.filter((p) => !cached(p));
        if (still.length) throw new Error(`apt-get download failed for ${still.join(' ')}: ${r.stderr.trim().slice(-400)}`);
    }

    /** Unpack client's packages into h.root; @returns the packages. */
    h.prepare = async (client) => {
        const pkgs = await closure(CLIENTS[client]);
        await fetchDebs(pkgs);
        for (const p of pkgs) {
            const r = await lib.run('dpkg', ['-x', path.join(h.cache, cached(p)), h.root]);
            if (r.code !== 0) throw new Error(`dpkg -x ${cached(p)}: ${r.stderr.trim()}`);
        }
        return pkgs;
    };

    h.libDirs = () => {
        const dirs = [];
        for (const base of ['lib', 'usr/lib']) {
            let names = [];
            try { names = fs.readdirSync(path.join(h.root, base)); } catch (_) { /* none */ }
            for (const n of names) if (/-linux-gnu/.test(n)) dirs.push(path.join(h.root, base, n));
        }
        return dirs.join(':');
    };

    /** null, or why there is no private mount namespace with overlayfs. */
    h.probe = async (dir) => {
        const probeUpper = path.join(dir, 'probe-upper');
        const probeWork = path.join(dir, 'probe-work');
        fs.mkdirSync(probeUpper);
        fs.mkdirSync(probeWork);
        const probe = await lib.run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c',
            'mount -t overlay overlay -o "lowerdir=/usr/sbin,upperdir=$1,workdir=$2" /usr/sbin', 'sh',
            probeUpper, probeWork]).catch((e) => ({ code: -1, stderr: String(e) }));
        return probe.code === 0 ? null : `no private mount namespace with overlayfs: ${probe.stderr.trim()}`;
    };

    h.init = (dir) => {
        h.dir = dir;
        h.root = path.join(dir, 'root');
        fs.mkdirSync(h.root);
        fs.mkdirSync(path.join(dir, 'home'));
        h.wrapperLog = path.join(dir, 'calls');
        fs.mkdirSync(h.wrapperLog);
        fs.mkdirSync(path.join(dir, 'sbin-upper'));
    };

    /** The wrapper /usr/sbin/sendmail (in the overlay's upper layer): records
     *  argv (NUL-separated), stdin, stderr and exit code, then runs mailconn
     *  as `sendmail` with env (MAILCONN_CONFIG...) exported. */
    h.writeWrapper = (env) => {
        const q = (s) => `'${s.replace(/'/g, "'\\''")}'`;
        const vars = Object.assign({ MAILCONN_PLUGIN_PATH: process.env.MAILCONN_PLUGIN_PATH || '' }, env);
        fs.writeFileSync(path.join(h.dir, 'sbin-upper', 'sendmail'), [
            '#!/bin/bash',
            `f=${q(h.wrapperLog)}/call.$(date +%s%N).$$`,
            'cat > "$f.in"',
            'unset LD_LIBRARY_PATH PERL5LIB',
            `export ${Object.entries(vars).map(([k, v]) => `${k}=${q(v)}`).join(' ')}`,
            `(exec -a sendmail ${q(process.env.MAILCONN_BIN)} "$@") < "$f.in" 2> "$f.err"`,
            'rc=$?',
            'cat "$f.err" >&2',
            'printf \'%s\\0\' "$@" > "$f.argv.tmp"',
            'echo $rc > "$f.rc"',
            'mv "$f.argv.tmp" "$f.argv"',
            'exit $rc',
            '',
        ].join('\n'), { mode: 0o755 });
    };

    /** argv for unshare: overlays /usr/sbin with the wrapper, runs extra (shell
     *  text, run with set -e), then execs cmd. */
    h.nsArgs = (cmd, extra = '') => {
        const n = ++nsCount;
        const work = path.join(h.dir, `sbin-work-${n}`);
        fs.mkdirSync(work);
        const script = 'set -e; mount -t overlay overlay -o "lowerdir=/usr/sbin,upperdir=$1,workdir=$2" /usr/sbin; ' +
            `shift 2; ${extra} exec "$@"`;
        return ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', path.join(h.dir, 'sbin-upper'),
            work, ...cmd];
    };

    h.clientEnv = (extra) => Object.assign({ HOME: path.join(h.dir, 'home'), LC_ALL: 'C.UTF-8',
        LD_LIBRARY_PATH: h.libDirs(), PERL5LIB: path.join(h.root, 'usr/share/perl5') }, extra || {});

    /** The wrapper's records, oldest first: [{id, argv, stdin, stderr, rc}]. */
    h.calls = () => fs.readdirSync(h.wrapperLog).filter((f) => f.endsWith('.argv')).sort()
        .map((f) => {
            const base = path.join(h.wrapperLog, f.slice(0, -5));
            const argv = fs.readFileSync(`${base}.argv`, 'latin1').split('\0');
            argv.pop();
            const read = (ext) => {
                try { return fs.readFileSync(`${base}.${ext}`, 'utf8'); } catch (_) { return ''; }
            };
            return { id: f, argv, stdin: read('in'), stderr: read('err'), rc: read('rc').trim() };
        });

    return h;
}

/**
 * A git repository under dir with two commits by "Dev Eloper
 * <dev@example.test>" (the second's subject `subject`), sendemail.smtpserver
 * set to /usr/sbin/sendmail, and the second commit as a patch file
 * (format-patch, `prefix` in its subject). @returns {Promise<{repo, patch}>}
 */
async function gitPatch(dir, subject, prefix = 'PATCH') {
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo, { recursive: true });
    const git = async (...a) => {
        const r = await lib.run('git', a, { cwd: repo, env: { HOME: path.join(dir, 'home'),
            GIT_CONFIG_NOSYSTEM: '1' } });
        if (r.code !== 0) throw new Error(`git ${a.join(' ')}: ${r.stderr}`);
        return r.stdout;
    };
    await git('init', '-q');
    await git('config', 'user.name', 'Dev Eloper');
    await git('config', 'user.email', 'dev@example.test');
    await git('config', 'sendemail.smtpserver', '/usr/sbin/sendmail');
    fs.writeFileSync(path.join(repo, 'f'), 'a\n');
    await git('add', 'f');
    await git('commit', '-qm', 'init');
    fs.appendFileSync(path.join(repo, 'f'), 'b\n');
    await git('commit', '-qam', subject);
    const patch = (await git('format-patch', '-1', `--subject-prefix=${prefix}`, '-o',
        path.join(dir, 'patches'))).trim();
    return { repo, patch };
}

module.exports = { CLIENTS, MTA, snapshot, harness, gitPatch };
