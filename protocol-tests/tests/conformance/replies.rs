use kgroup_integration::transaction::{OffsetTransaction, TransactionError};

use super::*;

/// Two brokers, the case's group coordinated by the bootstrap one.
const TWO_BROKERS: Needs = Needs { second_broker: true, ..SHARED };

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!("T03", TWO_BROKERS, "coordinator=bootstrap join=NOT_COORDINATOR commit=NOT_COORDINATOR,NOT_COORDINATOR", |c| {
            let m = c.solo(None).await?;
            let other = c.other_conn().await?;
            let (code, coordinator) = c.find_coordinator(&other).await?;
            if code != 0 {
                return Ok(format!("find-coordinator={}", e(code)));
            }
            // An undecodable error answer is rendered too, and the commit still tried.
            let join = c.join(&other, &c.join_req(&m.id, None)).await.map_or_else(|x| x, |r| e(r.error_code));
            let commit = c.commit(&other, m.gen, &m.id, None).await?;
            Ok(format!("coordinator={coordinator} join={join} commit={commit}"))
        }),
        case!("T05", Needs { initial_rebalance_delay: Duration::from_millis(3000), ..SHARED }, "alone: parked-1.5s=true NONE gen=1 leader=self members=1 type=consumer; pair: extended=true NONE,NONE gen=1,1 one-leader=true members=2,0", |c| {
            // (a) one member waits out the whole delay; (b) a second member 1 s later extends it
            // once (to about 6 s, §4.3), and both are answered together. Each answer is timed
            // when it arrives, so a loaded machine that runs this task late cannot shift it
            // across a check.
            let alone = async {
                let c = c.sub("alone");
                let started = tokio::time::Instant::now();
                let (r, answered) = spawn_join(&c).await.map_err(err)??;
                let parked = answered - started >= Duration::from_millis(1500);
                Ok::<_, String>(format!(
                    "parked-1.5s={parked} {} gen={} leader={} members={} type={}",
                    e(r.error_code),
                    r.generation_id,
                    if r.leader == r.member_id { "self".to_string() } else { r.leader.to_string() },
                    r.members.len(),
                    r.protocol_type.as_deref().unwrap_or("<none>")
                ))
            };
            let pair = async {
                let c = c.sub("pair");
                let started = tokio::time::Instant::now();
                let a = spawn_join(&c);
                tokio::time::sleep(Duration::from_millis(1000)).await;
                let b = spawn_join(&c);
                let (ra, a_answered) = a.await.map_err(err)??;
                let (rb, b_answered) = b.await.map_err(err)??;
                // Both answered at least 4.5 s after the first join: midway between the first
                // delay's end (3 s) and the extended one's (6 s, a second delay counted from the
                // first's end).
                let extended = a_answered.min(b_answered) - started >= Duration::from_millis(4500);
                let mut members = [ra.members.len(), rb.members.len()];
                members.sort_unstable_by(|x, y| y.cmp(x));
                Ok::<_, String>(format!(
                    "extended={extended} {},{} gen={},{} one-leader={} members={},{}",
                    e(ra.error_code),
                    e(rb.error_code),
                    ra.generation_id,
                    rb.generation_id,
                    ra.leader == rb.leader && (ra.leader == ra.member_id || ra.leader == rb.member_id),
                    members[0],
                    members[1]
                ))
            };
            let (alone, pair) = tokio::join!(alone, pair);
            Ok(format!("alone: {}; pair: {}", alone?, pair?))
        }),
        case!("T12", Needs { max_group_size: Some(2), ..SHARED }, "GROUP_MAX_SIZE_REACHED member=\"\" state=Stable", |c| {
            c.pair(None).await?;
            let conn = c.conn().await?;
            let r = c.join(&conn, &c.join_req("", None)).await?;
            Ok(format!("{} member={} state={}", e(r.error_code), id_shape(&r.member_id, CLIENT_ID), c.state().await))
        }),
        case!("T14", "wait: held=true NONE,NONE gen=N+1,N+1; leave: leave=top=NONE members=[NONE] prompt=true NONE,NONE gen=N+1,N+1", |c| {
            let (wait, leave) = tokio::join!(pending_holds_join(c.sub("wait"), false), pending_holds_join(c.sub("leave"), true));
            Ok(format!("wait: {}; leave: {}", wait?, leave?))
        }),
        case!("T21", "b-sync=REBALANCE_IN_PROGRESS a-hb=UNKNOWN_MEMBER_ID", |c| {
            // The leader heartbeats (so only the DelayedSync can remove it) but never syncs.
            let (a, b) = c.joined_pair(None).await?;
            let parked = c.sync_parked(&b, &c.sync_req(&b, b.gen, &[]))?;
            let a_hb = heartbeat_until_answered(&c, &[&a]).await?;
            let (b_sync, _) = parked.await.map_err(err)??;
            Ok(format!("b-sync={} a-hb={}", e(b_sync), e(a_hb[0])))
        }),
        case!("T22", "a-sync=NONE state=Stable a-hb=REBALANCE_IN_PROGRESS b-hb=UNKNOWN_MEMBER_ID", |c| {
            // The follower heartbeats (so only the DelayedSync can remove it) but never syncs.
            let (a, b) = c.joined_pair(None).await?;
            let (a_sync, _) = c.sync(&a, &c.sync_req(&a, a.gen, &[(&a.id, b"a"), (&b.id, b"b")])).await?;
            let state = c.state().await;
            let hb = heartbeat_until_answered(&c, &[&a, &b]).await?;
            Ok(format!("a-sync={} state={state} a-hb={} b-hb={}", e(a_sync), e(hb[0]), e(hb[1])))
        }),
        case!("T29", "during=REBALANCE_IN_PROGRESS joined=NONE gen=N+1 leader=D after=ILLEGAL_GENERATION", |c| {
            // Static S (session 60 s) never rejoins: it stays a member through the completion
            // (RT 10 s) and is only removed by the DelayedSync 10 s later.
            let conn = c.conn().await?;
            let req = c.join_req("", Some("s")).with_session_timeout_ms(60_000);
            let r = c.join(&conn, &req).await?;
            let s = M { conn, id: r.member_id.to_string(), gen: r.generation_id, instance: Some("s".into()) };
            let (code, _) = c.sync(&s, &c.sync_req(&s, s.gen, &[(&s.id, b"a")])).await?;
            if r.error_code != 0 || code != 0 {
                return Err(format!("static join: {} {}", e(r.error_code), e(code)));
            }
            let (d, parked) = c.newcomer().await?;
            let during = c.hb(&s, s.gen).await?;
            let rd = parked.await.map_err(err)??;
            let gen = if rd.generation_id == s.gen + 1 { "N+1".into() } else { rd.generation_id.to_string() };
            let leader = if rd.leader.as_str() == d.id { "D".into() } else { id_shape(&rd.leader, "s") };
            let after = c.hb(&s, s.gen).await?;
            Ok(format!("during={} joined={} gen={gen} leader={leader} after={}", e(during), e(rd.error_code), e(after)))
        }),
        case!("T31", "a-hb=REBALANCE_IN_PROGRESS b-hb=UNKNOWN_MEMBER_ID state=PreparingRebalance", |c| {
            let c = Arc::new(Ctx { session_ms: 6000, ..Ctx::clone(&c) });
            let (a, b) = c.pair(None).await?;
            // A keeps heartbeating; B is silent and expires after its 6 s session.
            let a_hb = heartbeat_until_answered(&c, &[&a]).await?;
            let b_hb = c.hb(&b, b.gen).await?;
            Ok(format!("a-hb={} b-hb={} state={}", e(a_hb[0]), e(b_hb), c.state().await))
        }),
        // The target is cp-kafka 7.6.x, built from Kafka's 3.6 branch after 3.6.1 (7.6.0 shipped
        // in February 2024), so KAFKA-15755 is fixed: a v0-2 LeaveGroup keeps its top-level
        // error. Apache Kafka 3.6.0 answered UNSUPPORTED_VERSION (§6.5).
        case!("T38", TWO_BROKERS, "v2=NOT_COORDINATOR", |c| {
            let other = c.other_conn().await?;
            let req = LeaveGroupRequest::default().with_group_id(GroupId(s(&c.group))).with_member_id(s("x"));
            let r = other.send_at(&req, 2, REQ).await.map_err(err)?;
            Ok(format!("v2={}", e(r.error_code)))
        }),
        case!("T46", "FENCED_INSTANCE_ID,FENCED_INSTANCE_ID", |c| {
            let m = c.solo(Some("i")).await?;
            c.commit(&m.conn, m.gen, "other", Some("i")).await
        }),
        case!("T51", "txn-commit=NONE stable=group=NONE 0:-1:\"\":UNSTABLE_OFFSET_COMMIT unstable=group=NONE 0:5:\"\":NONE end=NONE after=group=NONE 0:9:\"t\":NONE", |c| {
            let conn = c.conn().await?;
            c.commit_in(&conn, &c.group, -1, "", None, c.topic(), &[(0, 5, None)]).await?;
            let txn = OffsetTransaction::begin(&conn, &c.group).await.map_err(|failure| match failure {
                TransactionError::Refused { request, code } => format!("{request}: {}", e(code)),
                unanswered => unanswered.to_string(),
            })?;
            let codes = txn.commit_offset(&conn, &c.group, c.topic(), 9).await?;
            let txn_commit = codes.iter().map(|code| e(*code)).collect::<Vec<_>>().join(",");
            let stable = fetch(&c, &conn, Some(vec![0]), true).await?;
            let unstable = fetch(&c, &conn, Some(vec![0]), false).await?;
            let end = txn.commit(&conn).await?;
            // The markers are written after EndTxn returns: poll until the offset is stable.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut after = fetch(&c, &conn, Some(vec![0]), true).await?;
            while after.contains("UNSTABLE_OFFSET_COMMIT") && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                after = fetch(&c, &conn, Some(vec![0]), true).await?;
            }
            Ok(format!("txn-commit={txn_commit} stable={stable} unstable={unstable} end={} after={after}", e(end)))
        }),
    ]
}

impl Ctx {
    /// A connection to the broker that does not coordinate the case's group.
    async fn other_conn(&self) -> Res<Connection> {
        let addr = self.other.as_deref().ok_or("the peer has no second broker")?;
        let config = ConnectionConfig { client_id: CLIENT_ID.to_owned(), ..Default::default() };
        Connection::open(addr, Arc::new(config)).await.map_err(err)
    }
}

/// A complete join (both steps) on a new connection, left running; its answer comes with the
/// instant it arrived.
fn spawn_join(c: &Arc<Ctx>) -> tokio::task::JoinHandle<Res<(JoinGroupResponse, tokio::time::Instant)>> {
    let c = c.clone();
    tokio::spawn(async move {
        let conn = c.conn().await?;
        let answer = c.join_member(&conn, None).await?;
        Ok((answer, tokio::time::Instant::now()))
    })
}

/// Heartbeats each member every 500 ms (keeping it alive) until it gets an answer other than
/// NONE, for at most 15 s; returns each member's first such answer (NONE if none came).
async fn heartbeat_until_answered(c: &Ctx, members: &[&M]) -> Res<Vec<i16>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut answers = vec![0; members.len()];
    while answers.contains(&0) && tokio::time::Instant::now() < deadline {
        for (m, answer) in members.iter().zip(answers.iter_mut()) {
            if *answer == 0 {
                *answer = c.hb(m, m.gen).await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(answers)
}

/// T14: A and B rejoin (RT 60 s) while C holds a MEMBER_ID_REQUIRED id: the join completes
/// when C's pending id expires (its 10 s session), or at once when C leaves with it.
async fn pending_holds_join(c: Arc<Ctx>, leave: bool) -> Res<String> {
    let (a, b) = c.pair(None).await?;
    let rejoin = |m: &M| c.join_req(&m.id, None).with_rebalance_timeout_ms(60_000);
    let a_join = c.join_parked(&a.conn, &rejoin(&a))?;
    c.settled(|g| g.group_state.as_str() != "Stable").await;
    let conn = c.conn().await?;
    let first = c.join(&conn, &c.join_req("", None)).await?;
    if first.error_code != 79 {
        return Err(format!("C's first step: {}", e(first.error_code)));
    }
    let b_join = c.join_parked(&b.conn, &rejoin(&b))?;
    tokio::time::sleep(SETTLE).await;
    let head = if leave {
        let left = c.leave(&c.group, &[(&first.member_id, None)]).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        format!("leave={left} prompt={}", a_join.is_finished() && b_join.is_finished())
    } else {
        tokio::time::sleep(Duration::from_secs(3)).await;
        format!("held={}", !a_join.is_finished() && !b_join.is_finished())
    };
    let ra = a_join.await.map_err(err)??;
    let rb = b_join.await.map_err(err)??;
    let gen =
        |r: &JoinGroupResponse| if r.generation_id == a.gen + 1 { "N+1".into() } else { r.generation_id.to_string() };
    Ok(format!("{head} {},{} gen={},{}", e(ra.error_code), e(rb.error_code), gen(&ra), gen(&rb)))
}
