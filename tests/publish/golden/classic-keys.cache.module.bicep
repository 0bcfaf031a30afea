@description('The location for the resource(s) to be deployed.')
param location string = resourceGroup().location

param cache_kv_outputs_name string

resource cache 'Microsoft.Cache/redis@2024-11-01' = {
  name: take('cache-${uniqueString(resourceGroup().id)}', 63)
  location: location
  properties: {
    sku: {
      name: 'Basic'
      family: 'C'
      capacity: 1
    }
    enableNonSslPort: false
    disableAccessKeyAuthentication: false
    minimumTlsVersion: '1.2'
  }
  tags: {
    'aspire-resource-name': 'cache'
  }
}

resource keyVault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: cache_kv_outputs_name
}

resource connectionString 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = {
  name: 'connectionstrings--cache'
  properties: {
    value: '${cache.properties.hostName},ssl=true,password=${cache.listKeys().primaryKey}'
  }
  parent: keyVault
}

resource primaryAccessKey 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = {
  name: 'primaryaccesskey--cache'
  properties: {
    value: cache.listKeys().primaryKey
  }
  parent: keyVault
}

output name string = cache.name

output hostName string = cache.properties.hostName
