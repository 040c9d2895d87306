document.getElementById('freeze').addEventListener('click', function () { Backchannel.close({result: 'frozen'}); });
document.getElementById('unfreeze').addEventListener('click', function () { Backchannel.close({result: 'active'}); });
